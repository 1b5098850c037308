//! The figure of one benches/swarm.sh case: each peer's completed fraction over time, one panel
//! per client side by side, as an SVG document. Parsing `progress.tsv` and drawing are pure
//! (text in, text out), so tests/swarm_bench.rs checks them on the file a real run wrote.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;

/// Up to this many peers a panel names each in its legend; beyond, the legend would cover the
/// curves and names only the bound.
const MAX_LEGEND_PEERS: usize = 12;
/// Colours for the peers of a panel, one per host (repeating past eight); relays are black.
const PEER_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const PANEL_WIDTH: u32 = 460;
const HEIGHT: u32 = 420;
const TITLE_HEIGHT: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("progress.tsv line {line}: {reason}")]
    Parse { line: usize, reason: String },
    #[error("progress.tsv has no sample of a downloader")]
    Empty,
    #[error("drawing the figure: {0}")]
    Draw(String),
}

/// One peer's curve in one run: (seconds since t = 0, fraction complete).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub host: String,
    pub role: String,
    pub run: u32,
    pub points: Vec<(f64, f64)>,
}

/// One client's curves, in the order the hosts first appear.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub client: String,
    pub curves: Vec<Curve>,
}

/// Roles drawn: the peers that fetch the file (the seeder and the tracker host are not).
fn is_drawn(role: &str) -> bool {
    matches!(role, "downloader" | "late" | "relay")
}

/// The panels of a progress.tsv (columns: client, run, host, role, t, fraction, then byte
/// counters), clients in the order they first appear. Samples whose fraction is `-` (the client
/// did not answer) are left out.
pub fn parse_progress(tsv: &str) -> Result<Vec<Panel>, PlotError> {
    let mut panels: Vec<Panel> = Vec::new();
    let mut index: BTreeMap<(usize, u32, String), usize> = BTreeMap::new();
    for (n, line) in tsv.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let parse_error = |reason: String| PlotError::Parse {
            line: n + 1,
            reason,
        };
        let fields: Vec<&str> = line.split('\t').collect();
        let [client, run, host, role, t, fraction, ..] = fields[..] else {
            return Err(parse_error(format!(
                "{} columns, expected 10",
                fields.len()
            )));
        };
        if !is_drawn(role) || fraction == "-" {
            continue;
        }
        let run: u32 = run
            .parse()
            .map_err(|e| parse_error(format!("run {run:?}: {e}")))?;
        let t: f64 = t
            .parse()
            .map_err(|e| parse_error(format!("time {t:?}: {e}")))?;
        let fraction: f64 = fraction
            .parse()
            .map_err(|e| parse_error(format!("fraction {fraction:?}: {e}")))?;
        let panel = match panels.iter().position(|p| p.client == client) {
            Some(i) => i,
            None => {
                panels.push(Panel {
                    client: client.to_owned(),
                    curves: Vec::new(),
                });
                panels.len() - 1
            }
        };
        let curves = &mut panels[panel].curves;
        let curve = *index
            .entry((panel, run, host.to_owned()))
            .or_insert_with(|| {
                curves.push(Curve {
                    host: host.to_owned(),
                    role: role.to_owned(),
                    run,
                    points: Vec::new(),
                });
                curves.len() - 1
            });
        curves[curve].points.push((t, fraction));
    }
    if panels.is_empty() {
        return Err(PlotError::Empty);
    }
    Ok(panels)
}

/// What the figure says besides the curves.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// The case, above the panels.
    pub title: String,
    /// The fluid-model bound, drawn as a vertical line in every panel.
    pub t_min: Option<f64>,
}

/// The SVG document: one panel per client, all on the same time axis so that they compare at a
/// glance. A peer's first run is drawn solid; further runs thinner, in the same colour.
pub fn draw_svg(panels: &[Panel], labels: &Labels) -> Result<String, PlotError> {
    let draw_error = |e: &dyn std::fmt::Display| PlotError::Draw(e.to_string());
    let t_end = panels
        .iter()
        .flat_map(|p| &p.curves)
        .flat_map(|c| &c.points)
        .map(|&(t, _)| t)
        .chain(labels.t_min)
        .fold(1.0_f64, f64::max);
    let mut svg = String::new();
    {
        let width = PANEL_WIDTH * panels.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(&e))?;
        let (title, body) = root.split_vertically(TITLE_HEIGHT);
        title
            .titled(&labels.title, ("sans-serif", 16))
            .map_err(|e| draw_error(&e))?;
        for (area, panel) in body.split_evenly((1, panels.len())).iter().zip(panels) {
            draw_panel(area, panel, t_end, labels.t_min).map_err(|e| draw_error(&e))?;
        }
        root.present().map_err(|e| draw_error(&e))?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    t_end: f64,
    t_min: Option<f64>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.client, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..t_end * 1.02, 0.0..1.02)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the downloaders started")
        .y_desc("fraction complete")
        .light_line_style(BLACK.mix(0.03))
        .draw()?;
    if let Some(t) = t_min {
        chart
            .draw_series(LineSeries::new([(t, 0.0), (t, 1.02)], BLACK.mix(0.5)))?
            .label(format!("T_min {t:.1} s"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5)));
    }
    let mut hosts: Vec<&str> = Vec::new();
    let peers_named = panel
        .curves
        .iter()
        .filter(|c| c.run == panel.curves[0].run)
        .count()
        <= MAX_LEGEND_PEERS;
    for curve in &panel.curves {
        let first_run = !panel
            .curves
            .iter()
            .any(|c| c.host == curve.host && c.run < curve.run);
        let colour = if curve.role == "relay" {
            BLACK
        } else {
            let n = hosts
                .iter()
                .position(|h| *h == curve.host)
                .unwrap_or_else(|| {
                    hosts.push(&curve.host);
                    hosts.len() - 1
                });
            PEER_COLOURS[n % PEER_COLOURS.len()]
        };
        let style = if first_run {
            colour.stroke_width(2)
        } else {
            colour.mix(0.6).stroke_width(1)
        };
        let series = chart.draw_series(LineSeries::new(curve.points.iter().copied(), style))?;
        if first_run && peers_named {
            let mut label = curve.host.clone();
            if curve.role != "downloader" {
                let _ = write!(label, " ({})", curve.role);
            }
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 11))
        .draw()
}
