#!/usr/bin/env bash
# ivcsd against the BitTorrent software people use, in one run on 127.0.0.1 (issue 7, item 1).
#
#   benches/compare.sh [SIZE_MIB]            default 1024 (1 GiB)
#   DOWNLOADERS=4 SKIP=aria2c,lt-plain benches/compare.sh 256
#
# One random file of SIZE_MIB MiB is moved from one seeder to 1 and then to DOWNLOADERS (default
# 4) downloaders at once, by:
#   ivcsd      encrypted (RC4+ per 16 KiB block): the release binary with its own tracker;
#              `peer publish --no-seed`, `admin torrent set-authority`, `peer seed`, `peer download`
#   ivcsd-aes  the same with `peer publish --cipher aes-256-ctr` (docs/protocol.md 6.4)
#   aria2c     aria2c to aria2c, plaintext
#   lt-plain   libtorrent (python3-libtorrent) to libtorrent, plaintext
#   lt-rc4     libtorrent with MSE/PE forced both ways at the RC4 level
# The three stock clients share one plain torrent made by mktorrent with the piece length ivcsd
# picks for the size (256 KiB up to 16 GiB) and Debian's opentracker (whitelisting that torrent).
#
# For each case: wall time from starting the downloaders until the last one exits with a
# complete copy (each client verifies every piece against the torrent; the harness then compares
# every copy with the source byte for byte, outside the timing), MB/s (10^6 bytes/s) delivered
# in total, the seeder's CPU seconds (utime+stime from /proc over the case), each downloader's
# CPU seconds and peak RSS (GNU time), and the seeder's peak RSS over the case (VmHWM, reset
# between cases through /proc/PID/clear_refs). The seeders start and check their data before the
# clock starts. At the end it prints the ratios of ivcsd to each other client.
# Note: the libtorrent figures include the Python interpreter (about 20 MiB RSS, start-up CPU).
#
# It installs what is missing from Debian (aria2 python3-libtorrent opentracker mktorrent time),
# works in a temporary directory (TMPDIR; it needs about (2 + DOWNLOADERS) x SIZE of disk), and
# stops every process it started on exit. Run it as root (apt-get; opentracker drops to nobody).
# It leaves the kernel's settings alone unless asked: on a VM that hands freed memory back to its
# host, BENCH_STABLE_MEMORY=1 turns that off for the run and restores it at exit (see
# bench_stable_memory in benches/lib.sh); the output says which it was.
# Raw output of a run is kept in benches/results/compare-<size>MiB.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
size_mib=${1:-1024}
ndl=${DOWNLOADERS:-4}
skip=",${SKIP:-},"
size=$((size_mib * 1024 * 1024))

need=()
command -v aria2c >/dev/null || need+=(aria2)
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || need+=(python3-libtorrent)
command -v opentracker >/dev/null || need+=(opentracker)
command -v mktorrent >/dev/null || need+=(mktorrent)
[ -x /usr/bin/time ] || need+=(time)
. "$repo/benches/lib.sh"
bench_apt_install "${need[@]}"

cargo build --release --quiet --bin ivcsd
bin=${CARGO_TARGET_DIR:-$repo/target}/release/ivcsd
gtime=/usr/bin/time
tck=$(getconf CLK_TCK)

bench_workdir compare
cpu_of() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
hwm_of() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$1/status"; }

piece_log=$(bench_piece_log "$size")

mkdir -p "$work/src"
head -c "$size" /dev/urandom >"$work/src/data.bin"
chmod -R a+rX "$work/src"
results=$work/results.tsv
: >"$results"

echo "# benches/compare.sh: ${size_mib} MiB, 1 -> 1 and 1 -> $ndl on 127.0.0.1"
echo "# $(date -u '+%F %T UTC'), $(nproc) cores ($(bench_cpu)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "# $("$bin" --version 2>/dev/null | sed -n 2p) (IVCSD_RC4PLUS_KERNEL forces one)"
echo "# $("$bin" -V 2>/dev/null || echo ivcsd), $(aria2c --version | head -1), libtorrent $(/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)'), opentracker (Debian $(dpkg-query -W -f='${Version}' opentracker))"
echo "# piece length $((1 << (piece_log - 10))) KiB; load average at start: $(load)"
# The downloads write (1 + ndl) copies at most at a time (one case's copies are deleted before
# the next); the source is in the page cache already.
bench_stable_memory $(((1 + ndl) * size))

# run_case NAME N SEEDER_PID: starts N downloaders through `dl_cmd I DIR` (a function each
# client defines), waits for them, checks the copies and records one line of results.
run_case() {
  local name=$1 n=$2 seeder=$3 i start end cpu0 cpu1 l
  l=$(load)
  echo 5 >"/proc/$seeder/clear_refs" 2>/dev/null || true
  cpu0=$(cpu_of "$seeder")
  local dls=()
  start=$(date +%s.%N)
  for i in $(seq "$n"); do
    rm -rf "$work/dl-$name-$i"
    mkdir -p "$work/dl-$name-$i"
    "$gtime" -o "$work/time-$name-$i" -f "%e %U %S %M" bash -c "$(dl_cmd "$i" "$work/dl-$name-$i")" \
      >"$work/log-$name-$i" 2>&1 &
    dls+=($!)
    pids+=($!)
  done
  local failed=0
  for i in "${!dls[@]}"; do wait "${dls[$i]}" || failed=1; done
  end=$(date +%s.%N)
  cpu1=$(cpu_of "$seeder")
  if [ $failed -ne 0 ]; then
    echo "$name 1->$n: a downloader failed:" >&2
    tail -n 5 "$work"/log-"$name"-* >&2
    exit 1
  fi
  for i in $(seq "$n"); do
    cmp -s "$work/src/data.bin" "$work/dl-$name-$i/data.bin" ||
      { echo "$name 1->$n: downloader $i's copy differs from the source" >&2; exit 1; }
  done
  local dl_cpu="" dl_rss="" e u s m
  for i in $(seq "$n"); do
    read -r e u s m <"$work/time-$name-$i"
    dl_cpu+="$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}'),"
    dl_rss+="$((m / 1024)),"
  done
  printf '%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}')" \
    "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", b - a}')" "${dl_cpu%,}" "${dl_rss%,}" \
    "$(hwm_of "$seeder")" "$l" >>"$results"
  tail -n 1 "$results" | awk -F'\t' -v sz="$size" '{printf "%-9s 1->%d  %7.2f s  %6.0f MB/s  seeder %6.2f s CPU %5d MiB  downloaders CPU s [%s] RSS MiB [%s]  (load %s)\n", $1, $2, $3, sz * $2 / $3 / 1e6, $4, $7, $5, $6, $8}'
}

# run_client NAME SEEDER_PID: 1 -> 1, then 1 -> N.
run_client() {
  run_case "$1" 1 "$2"
  [ "$ndl" -gt 1 ] && run_case "$1" "$ndl" "$2"
  rm -rf "$work"/dl-"$1"-*
}

# ---------------------------------------------------------------------------------------------
# ivcsd, encrypted: one tracker, one torrent per content cipher suite.

# run_ivcsd NAME SUITE: publishes the file with SUITE, seeds it and runs the cases.
run_ivcsd() {
  local name=$1 suite=$2 torrent="$work/$1.torrent" hash seeder
  "$gtime" -f "$name publish (encrypt + hash, $suite): %e s wall, %U+%S s CPU, %M KiB peak" \
    "$bin" --quiet peer publish "$work/src/data.bin" --tracker "$itracker" --user pub \
    --identity "$work/pub.pem" --output "$torrent" --cipher "$suite" --no-seed 2>&1
  hash=$("$bin" torrent show "$torrent" | awk '/^info hash/ {print $3}')
  "$bin" --quiet admin --tracker "$itracker" --user admin torrent set-authority "$hash" 9 >/dev/null
  "$bin" --quiet peer seed "$torrent" --data "$work/src/data.bin" --user pub \
    --identity "$work/pub.pem" --listen 127.0.0.1:0 &
  seeder=$!
  pids+=($seeder)
  # The seeder verifies its data before it announces; wait until the tracker lists it.
  for _ in $(seq 600); do
    "$bin" --quiet admin --tracker "$itracker" --user admin torrent show "$hash" 2>/dev/null |
      grep -Eq 'swarm: +[1-9]' && break
    sleep 0.2
  done
  ivcsd_torrent=$torrent
  dl_cmd() {
    echo "exec '$bin' --quiet peer download '$ivcsd_torrent' --output '$2' --user dl \
      --identity '$work/dl$1.pem' --listen 127.0.0.1:0"
  }
  run_client "$name" "$seeder"
  kill "$seeder"
}

if [[ $skip != *,ivcsd,* || $skip != *,ivcsd-aes,* ]]; then
  bench_users
  iport=$(free_port)
  itracker="http://127.0.0.1:$iport/announce"
  "$bin" --quiet tracker --authority "$work/authority.xml" --listen "127.0.0.1:$iport" \
    --data-dir "$work/ivcsd-tracker" &
  pids+=($!)
  wait_port "$iport"
  for i in $(seq "$ndl"); do "$bin" --quiet peer keygen --identity "$work/dl$i.pem" >/dev/null; done
  if [[ $skip != *,ivcsd,* ]]; then run_ivcsd ivcsd rc4+; fi
  if [[ $skip != *,ivcsd-aes,* ]]; then run_ivcsd ivcsd-aes aes-256-ctr; fi
fi

# ---------------------------------------------------------------------------------------------
# The stock clients: one plain torrent, opentracker.
if [[ $skip != *,aria2c,* || $skip != *,lt-plain,* || $skip != *,lt-rc4,* ]]; then
  oport=$(free_port)
  mkdir -p "$work/ot"
  chmod 755 "$work/ot"
  mktorrent -p -l "$piece_log" -a "http://127.0.0.1:$oport/announce" -o "$work/plain.torrent" \
    "$work/src/data.bin" >/dev/null
  bench_plain_info_hash "$work/plain.torrent" >"$work/ot/whitelist.txt"
  chmod 644 "$work/ot/whitelist.txt"
  printf 'access.whitelist /whitelist.txt\n' >"$work/ot/opentracker.conf"
  opentracker -i 127.0.0.1 -p "$oport" -P "$oport" -d "$work/ot" -u nobody \
    -f "$work/ot/opentracker.conf" >"$work/ot/log" 2>&1 &
  pids+=($!)
  wait_port "$oport"
fi

if [[ $skip != *,aria2c,* ]]; then
  aria_common="--enable-dht=false --enable-dht6=false --bt-enable-lpd=false
    --enable-peer-exchange=false --file-allocation=none --summary-interval=0
    --console-log-level=warn --download-result=hide --bt-max-peers=0 --allow-overwrite=true"
  aport=$(free_port)
  # shellcheck disable=SC2086
  aria2c $aria_common --listen-port="$aport" --seed-ratio=0.0 --bt-seed-unverified=true \
    --check-integrity=false -d "$work/src" "$work/plain.torrent" >"$work/aria2c-seed.log" 2>&1 &
  seeder=$!
  pids+=($seeder)
  wait_port "$aport"
  sleep 2 # the first announce
  dl_cmd() {
    echo "exec aria2c $aria_common --listen-port=$(free_port) --seed-time=0 -d '$2' '$work/plain.torrent'" | tr '\n' ' '
  }
  run_client aria2c "$seeder"
  kill "$seeder"
fi

for enc in plain rc4; do
  [[ $skip == *,lt-$enc,* ]] && continue
  lport=$(free_port)
  /usr/bin/python3 "$repo/benches/compare_lt.py" seed "$work/plain.torrent" "$work/src" "$lport" "$enc" \
    >"$work/lt-seed.log" 2>&1 &
  seeder=$!
  pids+=($seeder)
  for _ in $(seq 1200); do grep -q seeding "$work/lt-seed.log" && break; sleep 0.1; done
  grep -q seeding "$work/lt-seed.log" || { echo "libtorrent seeder did not start" >&2; cat "$work/lt-seed.log" >&2; exit 1; }
  sleep 2 # the first announce
  dl_cmd() {
    echo "exec /usr/bin/python3 '$repo/benches/compare_lt.py' download '$work/plain.torrent' '$2' $(free_port) $enc"
  }
  run_client "lt-$enc" "$seeder"
  kill "$seeder"
done

echo
echo "# Summary (MB/s delivered in total; CPU s per GB delivered: seeder, downloaders together)"
/usr/bin/python3 - "$results" "$size" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, n, wall, scpu, dcpu, drss, srss, load = line.rstrip("\n").split("\t")
    n, wall, scpu = int(n), float(wall), float(scpu)
    dcpu = [float(x) for x in dcpu.split(",")]
    drss = [int(x) for x in drss.split(",")]
    rows[(name, n)] = dict(mbs=int(sys.argv[2]) * n / wall / 1e6, wall=wall,
                           gb=int(sys.argv[2]) * n / 1e9, scpu=scpu, dcpu=sum(dcpu),
                           drss=max(drss), srss=int(srss))
print(f"{'client':<9} {'n':>2} {'wall s':>8} {'MB/s':>7} {'seed s/GB':>10} {'dl s/GB':>8} {'dl RSS':>7} {'seed RSS':>8}")
for (name, n), r in rows.items():
    print(f"{name:<9} {n:>2} {r['wall']:>8.2f} {r['mbs']:>7.0f} {r['scpu']/r['gb']:>10.2f} "
          f"{r['dcpu']/r['gb']:>8.2f} {r['drss']:>6}M {r['srss']:>7}M")
print()
print("# ivcsd (RC4+) and ivcsd-aes (AES-256-CTR) / other: speed (higher is better), seeder CPU per byte, downloader CPU per byte, downloader peak RSS (lower is better)")
for ours in ("ivcsd", "ivcsd-aes"):
    for (name, n), r in rows.items():
        if name.startswith("ivcsd") or (ours, n) not in rows:
            continue
        i = rows[(ours, n)]
        print(f"{ours:<9} / {name:<9} 1->{n}: speed {i['mbs']/r['mbs']:.2f}x  seeder CPU {i['scpu']/max(r['scpu'],0.01):.2f}x  "
              f"downloader CPU {i['dcpu']/max(r['dcpu'],0.01):.2f}x  downloader RSS {i['drss']/max(r['drss'],1):.2f}x")
EOF
