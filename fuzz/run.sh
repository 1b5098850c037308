#!/usr/bin/env bash
# Runs every ivcsd fuzz target for SECONDS each (default 600), one after the other.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes -Z flags (sanitizers,
# coverage instrumentation) to rustc, which only a nightly toolchain accepts. On a stable
# toolchain, RUSTC_BOOTSTRAP=1 unlocks them: this script sets it, so stable rustc 1.95 is
# enough (checked on this project's machine; address sanitizer included). Set
# IVCSD_FUZZ_SANITIZER=none to build without the address sanitizer (faster, less strict).
#
# Each input gets -timeout seconds (a slower input is reported as a hang) and the process
# -rss_limit_mb of memory (more is reported as unbounded allocation); -max_len bounds the
# inputs the fuzzer makes. Findings land in fuzz/artifacts/<target>/; the corpus grows in
# fuzz/corpus/<target>/ (both ignored by git). Every finding becomes a regression test in
# tests/it/fuzz_regressions.rs once fixed.
set -euo pipefail

seconds="${1:-600}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(bencode metainfo peer_wire tracker_query authority_xml)
fi
sanitizer="${IVCSD_FUZZ_SANITIZER:-address}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."

export RUSTC_BOOTSTRAP=1
# Its own target directory: the fuzz build uses other flags than the workspace's.
export CARGO_TARGET_DIR="${IVCSD_FUZZ_TARGET_DIR:-$here/target}"

status=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    # Start from the committed seeds (valid inputs the fuzzer mutates from).
    if [ -d "fuzz/seeds/$target" ]; then
        cp -n fuzz/seeds/"$target"/* "fuzz/corpus/$target/" 2>/dev/null || true
    fi
    echo "== $target: ${seconds}s"
    # -max_len 65536: torrents and XML need room; -timeout 10: a parser taking 10 s on one
    # input is a hang; -rss_limit_mb 2048: more is an unbounded allocation.
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1; then
        echo "!! $target found a problem: see fuzz/artifacts/$target/"
        status=1
    fi
done
exit "$status"
