//! The fuzz targets' checks (`fuzz/checks.rs`) run under `cargo test` on every committed input:
//! the seeds the fuzzer starts from (`fuzz/seeds/<target>/`) and every input that once found a
//! bug (`fuzz/regressions/<target>/`, each file named after what it found). So a bug the fuzzer
//! found stays fixed without cargo-fuzz or a nightly toolchain. To add one: copy the crash file
//! from `fuzz/artifacts/<target>/` to `fuzz/regressions/<target>/<what-it-found>`.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/seeds/<target>` and `fuzz/regressions/<target>`;
/// returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let name = path.display().to_string();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("fuzz check {target} fails on {name}");
            }
            count += 1;
        }
    }
    count
}

#[test]
fn bencode_inputs() {
    assert!(replay("bencode", checks::bencode) > 0);
}

#[test]
fn metainfo_inputs() {
    assert!(replay("metainfo", checks::metainfo) > 0);
}

#[test]
fn peer_wire_inputs() {
    assert!(replay("peer_wire", checks::peer_wire) > 0);
}

#[test]
fn tracker_query_inputs() {
    assert!(replay("tracker_query", checks::tracker_query) > 0);
}

#[test]
fn authority_xml_inputs() {
    assert!(replay("authority_xml", checks::authority_xml) > 0);
}
