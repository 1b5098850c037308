//! `ivcsd demo` runs the whole flow on 127.0.0.1 and ends with an identical copy.

#[test]
fn the_demo_runs_end_to_end() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ivcsd"))
        .args(["demo", "--size-mib", "4"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("identical to alice's file: yes"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("tracker refused: torrent not found or not permitted")
            .count(),
        3,
        "bob before the authority is lowered, carol, and the relay: {stdout}"
    );
    assert!(
        stdout.contains("relay: carrying all of it")
            && stdout.contains("the relay's copy equals alice's plaintext: no, it is ciphertext"),
        "the relay carries the ciphertext: {stdout}"
    );
    assert!(
        stdout.contains("\"decision\":\"refuse\""),
        "the audit log shows the refusals: {stdout}"
    );
}
