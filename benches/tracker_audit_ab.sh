#!/usr/bin/env bash
# The audit log's cost alone, for comparing two builds quickly (issue 7, item 3):
#
#   BIN=path/to/ivcsd benches/tracker_audit_ab.sh        DURATION=5 PAIRS=3 CONNECTIONS=32
#
# Token-authenticated announces (benches/announce.lua, wrk, 1 thread) against one tracker
# restarted PAIRS times with the audit log on, then off, back to back. Prints announces/s and
# the tracker's CPU time (user + system of all its threads, /proc/PID/stat) per announce.
# benches/tracker_load.sh measures the same and more against opentracker; this one takes any
# prebuilt binary, so an older commit's build can be measured beside the current one.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:?}
duration=${DURATION:-5}
pairs=${PAIRS:-3}
conns=${CONNECTIONS:-32}
. "$repo/benches/lib.sh"
bench_workdir audit-ab
tracker=
bench_users
port=$(free_port); base="http://127.0.0.1:$port"
start() { "$bin" --quiet tracker --authority "$work/authority.xml" --listen "127.0.0.1:$port" --data-dir "$work/data" --config "$1" & tracker=$!; pids+=("$tracker"); wait_port "$port"; }
stop() { kill "$tracker"; wait "$tracker" 2>/dev/null || true; tracker=; }
printf 'audit = true\n' >"$work/on.toml"; printf 'audit = false\n' >"$work/off.toml"
start "$work/on.toml"
enc=()
for k in $(seq 8); do
  mkdir -p "$work/t$k"; head -c 65536 /dev/urandom >"$work/t$k/f$k.bin"
  "$bin" --quiet peer publish "$work/t$k/f$k.bin" --tracker "$base/announce" --user pub --identity "$work/pub.pem" --output "$work/t$k.torrent" --no-seed >/dev/null
  h=$("$bin" torrent show "$work/t$k.torrent" | awk '/^info hash/ {print $3}')
  "$bin" --quiet admin --tracker "$base/announce" --user admin torrent set-authority "$h" 5 >/dev/null
  enc+=("$(pct "$h")")
done
q="peer_id=-WK0001-000000000000&port=9999&left=1&compact=1"
token=$(curl -sf "$base/announce?info_hash=${enc[0]}&$q&username=dl&psw=$IVCSD_PASSWORD&getToken=y" | python3 -c 'import sys, re; b = sys.stdin.buffer.read(); m = re.search(rb"5:token(\d+):", b); n = int(m.group(1)); print(b[m.end():m.end() + n].decode())')
stop
ticks() { awk '{print $14 + $15}' "/proc/$tracker/stat"; }
run() { local t0 out; t0=$(ticks); out=$(wrk -t 1 -c "$conns" -d "${duration}s" -s "$repo/benches/announce.lua" "$base" -- "&token=$token" "${enc[@]}"); echo "$(awk '/^Requests\/sec/ {print $2}' <<<"$out") /s, CPU $(python3 -c "print('%.1f' % (($(ticks) - $t0) * 1e6 / $(getconf CLK_TCK) / $(awk '/requests in/ {print $1}' <<<"$out")))") us/announce"; }
for p in $(seq "$pairs"); do
  for mode in on off; do
    start "$work/$mode.toml"; r=$(run); stop
    echo "pair $p audit $mode: $r (load $(load))"
  done
done
wc -l "$work/data/audit.log"
