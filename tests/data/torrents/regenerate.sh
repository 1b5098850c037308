#!/bin/sh
# Regenerates the interoperability fixtures of tests/it/metainfo_interop.rs with stock tools.
# Needs mktorrent (1.1) and transmission-cli (transmission-create, transmission-show):
#   apt-get install -y mktorrent transmission-cli
# The inputs are deterministic; the .torrent files are committed so CI does not need the tools.
# Info hashes do not depend on creation dates, so they stay the same across runs; print them
# with `transmission-show FILE | grep Hash` and keep tests/it/metainfo_interop.rs in step.
set -eu
cd "$(dirname "$0")"
rm -rf input mktorrent-*.torrent transmission-*.torrent
mkdir -p input/dir/sub input/dir/.hidden-dir

# Deterministic bytes: a counter run through sha256, cut to length.
gen() { python3 -c "
import hashlib, sys
n = int(sys.argv[1]); seed = sys.argv[2].encode(); out = bytearray(); i = 0
while len(out) < n:
    out += hashlib.sha256(seed + str(i).encode()).digest(); i += 1
sys.stdout.buffer.write(bytes(out[:n]))" "$1" "$2"; }

gen 100000 single > input/single.bin
gen 20000 a > input/dir/a.txt
printf '' > input/dir/empty
gen 45000 b > input/dir/sub/b.bin
gen 1 c > input/dir/sub/c.bin
gen 7000 h > input/dir/.hidden-dir/.h

URL=http://127.0.0.1:6969/announce
# mktorrent: -l is log2 of the piece length, -p private, -d no creation date.
mktorrent -d -l 15 -a "$URL" -o mktorrent-single.torrent input/single.bin >/dev/null
mktorrent -d -l 15 -p -a "$URL" -o mktorrent-dir-private.torrent input/dir >/dev/null
# transmission-create: -s is the piece size in KiB.
transmission-create -s 16 -t "$URL" -o transmission-single-private.torrent -p input/single.bin >/dev/null
transmission-create -s 32 -t "$URL" -t http://backup.example/announce -c "fixture comment" \
    -o transmission-dir.torrent input/dir >/dev/null

for t in ./*.torrent; do
    printf '%s ' "$t"; transmission-show "$t" | grep -E '^ *Hash' | tr -s ' '
done
# ivcsd-dir.torrent is ivcsd's own (create_encrypted with a fixed key), checked with the stock
# transmission-show above; rewrite it with
#   IVCSD_REGENERATE_FIXTURES=1 cargo test --test it metainfo_interop::ivcsd
