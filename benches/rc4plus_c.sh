#!/bin/sh
# Builds the plain C RC4+ of benches/c/rc4plus.c with gcc -O3 and prints its keystream speed:
# the reference the Rust implementation is compared with (CIPHER.md 6.1).
# Usage: benches/rc4plus_c.sh [MiB, default 256] [runs, default 5]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${CARGO_TARGET_DIR:-$here/../target}/rc4plus-c
mkdir -p "$out"
gcc -O3 -march=native -Wall -Wextra -o "$out/rc4plus" "$here/c/rc4plus.c"
exec "$out/rc4plus" "$@"
