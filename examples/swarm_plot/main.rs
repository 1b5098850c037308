//! `swarm_plot PROGRESS.tsv OUT.svg [--title TEXT] [--t-min SECONDS]`: the figure of a
//! benches/swarm.sh case (each peer's completed fraction over time, one panel per client), which
//! the script draws at the end of a run. Built as an example so that plotters stays a
//! dev-dependency (see Cargo.toml).

mod plot;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        bail!("usage: swarm_plot PROGRESS.tsv OUT.svg [--title TEXT] [--t-min SECONDS]");
    };
    let mut labels = plot::Labels::default();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--title" => labels.title = value,
            "--t-min" => {
                labels.t_min = Some(
                    value
                        .parse()
                        .with_context(|| format!("--t-min {value:?}"))?,
                )
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    let tsv = std::fs::read_to_string(&input).with_context(|| format!("cannot read {input}"))?;
    let panels = plot::parse_progress(&tsv)?;
    let svg = plot::draw_svg(&panels, &labels)?;
    std::fs::write(&output, svg).with_context(|| format!("cannot write {output}"))?;
    Ok(())
}
