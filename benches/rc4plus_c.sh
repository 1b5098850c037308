#!/bin/sh
# Builds the plain C RC4+ of benches/c/rc4plus.c with -O3 and prints its keystream speed: the
# reference the Rust implementation is compared with (CIPHER.md 6.1). Every C compiler found
# (gcc, and clang when installed: `apt-get install clang`) builds and runs it, since the two
# differ by 5-10 % on this loop; the faster one is the honest reference.
# Usage: benches/rc4plus_c.sh [MiB, default 256] [runs, default 5]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${CARGO_TARGET_DIR:-$here/../target}/rc4plus-c
mkdir -p "$out"
found=
echo "# $(bash -c ". \"$here/lib.sh\"; bench_cpu")"
for cc in gcc clang; do
    command -v "$cc" >/dev/null 2>&1 || continue
    found=1
    "$cc" -O3 -march=native -Wall -Wextra -o "$out/rc4plus-$cc" "$here/c/rc4plus.c"
    echo "== $("$cc" --version | head -n 1)"
    "$out/rc4plus-$cc" "$@"
done
[ -n "$found" ] || { echo "rc4plus_c.sh: neither gcc nor clang found" >&2; exit 1; }
