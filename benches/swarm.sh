#!/usr/bin/env bash
# Encrypted transfers on loopback: one seeder to 1 and to 4 downloaders, with the real tracker
# and real peers (release build). Prints MB/s, CPU seconds and peak resident memory of each
# process, as measured by GNU time.
#
#   benches/swarm.sh [SIZE_MIB]        default 1024
#
# Every process it starts is stopped on exit; everything lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
cargo build --release --quiet
bin=$PWD/target/release/ivcsd
time_bin=/usr/bin/time
[ -x "$time_bin" ] || { echo "needs GNU time (apt-get install -y time)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export IVCSD_PASSWORD=bench-password
for u in "admin 0 --admin" "pub 1" "dl 1"; do
  set -- $u
  "$bin" admin user add "$1" --authority "$2" ${3:-} --authority-file "$work/authority.xml" >/dev/null
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tracker="http://127.0.0.1:$port/announce"
"$bin" --quiet tracker --authority "$work/authority.xml" --listen "127.0.0.1:$port" --data-dir "$work/tracker" &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

mkdir -p "$work/src"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$work/src/data.bin"

echo "# ivcsd loopback swarm, ${size_mib} MiB, $(nproc) cores, $(date -u +%F)"
"$time_bin" -f "publish (encrypt + hash): %e s wall, %U+%S s CPU, %M KiB peak" \
  "$bin" --quiet peer publish "$work/src/data.bin" --tracker "$tracker" --user pub \
  --identity "$work/pub.pem" --output "$work/data.torrent" --no-seed
"$bin" --quiet admin --tracker "$tracker" --user admin torrent set-authority \
  "$("$bin" torrent show "$work/data.torrent" | awk '/^info hash/ {print $3}')" 9 >/dev/null

"$bin" --quiet peer seed "$work/data.torrent" --data "$work/src/data.bin" --user pub \
  --identity "$work/pub.pem" --listen 127.0.0.1:0 &
seeder=$!
pids+=($seeder)

run_downloaders() {
  local n=$1
  local start end
  start=$(date +%s.%N)
  local dl_pids=()
  for i in $(seq "$n"); do
    rm -rf "$work/dl$i"
    "$time_bin" -o "$work/time$i" -f "%e %U %S %M" \
      "$bin" --quiet peer download "$work/data.torrent" --output "$work/dl$i" --user dl \
      --identity "$work/dl$i.pem" --listen 127.0.0.1:0 &
    dl_pids+=($!)
  done
  for p in "${dl_pids[@]}"; do wait "$p"; done
  end=$(date +%s.%N)
  for i in $(seq "$n"); do cmp -s "$work/src/data.bin" "$work/dl$i/data.bin" || { echo "downloader $i: copy differs" >&2; exit 1; }; done
  python3 - "$n" "$size_mib" "$start" "$end" "$work" <<'EOF'
import sys
n, size, start, end, work = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
wall = end - start
print(f"1 seeder -> {n} downloader(s): {wall:.2f} s wall, {size * n / wall:.0f} MiB/s delivered in total")
for i in range(1, n + 1):
    e, u, s, m = open(f"{work}/time{i}").read().split()
    print(f"  downloader {i}: {float(e):.2f} s, {float(u) + float(s):.2f} s CPU, {int(m) // 1024} MiB peak RSS")
EOF
}

seeder_cpu() { awk '{print ($14 + $15) / 100}' "/proc/$seeder/stat"; }
before=$(seeder_cpu)
run_downloaders 1
after=$(seeder_cpu)
echo "  seeder: $(python3 -c "print(f'{$after - $before:.2f}')") s CPU"
before=$after
run_downloaders 4
after=$(seeder_cpu)
echo "  seeder: $(python3 -c "print(f'{$after - $before:.2f}')") s CPU"
echo "  seeder peak RSS: $(awk '/VmHWM/ {print int($2/1024)}' /proc/$seeder/status) MiB"
