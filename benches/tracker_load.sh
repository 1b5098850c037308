#!/usr/bin/env bash
# The tracker under load (issue 7, item 2), in one run on 127.0.0.1.
#
#   benches/tracker_load.sh                 DURATION=8 REPEAT=3 CONNECTIONS=32 WRK_THREADS=1
#
# 1. Announces per second, driven by wrk over keep-alive loopback connections with
#    benches/announce.lua (8 torrents, 10,000 peers per wrk thread cycling through peer_id and port):
#    - ivcsd, authenticated with a token (getToken=y), authority check on, audit log on;
#    - ivcsd, authenticated with username + psw (the remembered-password path), audit log on;
#    - the same two with the audit log off (`audit = false` in the config);
#    - ivcsd, token, audit on, with `Connection: close` on every request;
#    The ivcsd cases run in REPEAT rounds; each round restarts the tracker with the audit log on
#    (token, close, psw), then off (token, psw), so that each on/off pair runs back to back
#    under the same machine load. The audit log's cost is given per round and as the median,
#    and as the tracker's CPU time (all threads) per answered announce, which the other load
#    on a shared machine moves far less than it moves announces per second.
#    (The tracker keeps its data directory across restarts: tokens and torrents stay valid.)
#    - opentracker (Debian), unauthenticated, with the same 8 info hashes whitelisted. It closes
#      every connection after its answer (no keep-alive; wrk counts those as read errors), so
#      the close case above is the like-for-like comparison.
#    Each is run REPEAT times for DURATION seconds; the median is printed, with the ratios.
# 2. getcipher's RSA work on one core (benches/tracker.rs: SPKI parse + PSS verify + OAEP wrap)
#    beside `openssl speed` for rsa2048 and rsa3072 on one core. A getcipher costs two RSA
#    public-key operations (verify, encrypt), so the machine's bound is verify/s / 2 (OpenSSL
#    3.0's speed prints sign and verify; RSA public encryption costs what verification does).
#
# wrk and the tracker share the machine's cores. It installs what is missing from Debian (wrk,
# opentracker), works in a temporary directory and stops every process it started on exit.
# Raw output of a run: benches/results/tracker_load.txt (the RSA part of the latest run, with
# aws-lc-rs: benches/results/getcipher-rsa.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
duration=${DURATION:-8}
repeat=${REPEAT:-3}
conns=${CONNECTIONS:-32}
wthreads=${WRK_THREADS:-1}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v opentracker >/dev/null || need+=(opentracker)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing from Debian: ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
# IVCSD_BIN=path measures another build (an A/B against an earlier commit) instead of building
# this checkout; SKIP_RSA=1 leaves out part 2.
if [ -n "${IVCSD_BIN:-}" ]; then
  bin=$IVCSD_BIN
else
  cargo build --release --quiet --bin ivcsd
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/ivcsd
fi

. "$repo/benches/lib.sh"
bench_workdir tracker-load

echo "# benches/tracker_load.sh: wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $wthreads thread(s), $conns keep-alive connections, ${duration} s x $repeat"
echo "# $(date -u '+%F %T UTC'), $(nproc) cores ($(bench_cpu)); load average at start: $(load)"
echo "# binary: $bin ($("$bin" -V))"

# --- ivcsd: users, 8 published torrents readable by `dl` -------------------------------------
bench_users
port=$(free_port)
base="http://127.0.0.1:$port"
start_ivcsd() {
  "$bin" --quiet tracker --authority "$work/authority.xml" --listen "127.0.0.1:$port" \
    --data-dir "$work/data" --config "$1" &
  tracker=$!
  pids+=($tracker)
  wait_port "$port"
}
printf 'audit = true\n' >"$work/audit-on.toml"
printf 'audit = false\n' >"$work/audit-off.toml"
start_ivcsd "$work/audit-on.toml"
hashes=()
for k in $(seq 8); do
  mkdir -p "$work/t$k"
  head -c 65536 /dev/urandom >"$work/t$k/file$k.bin"
  "$bin" --quiet peer publish "$work/t$k/file$k.bin" --tracker "$base/announce" --user pub \
    --identity "$work/pub.pem" --output "$work/t$k.torrent" --no-seed
  h=$("$bin" torrent show "$work/t$k.torrent" | awk '/^info hash/ {print $3}')
  "$bin" --quiet admin --tracker "$base/announce" --user admin torrent set-authority "$h" 5 >/dev/null
  hashes+=("$h")
done
enc=()
for h in "${hashes[@]}"; do enc+=("$(pct "$h")"); done

q="peer_id=-WK0001-000000000000&port=9999&left=1&compact=1"
token=$(curl -sf "$base/announce?info_hash=${enc[0]}&$q&username=dl&psw=$IVCSD_PASSWORD&getToken=y" |
  python3 -c 'import sys, re; b = sys.stdin.buffer.read(); m = re.search(rb"5:token(\d+):", b); n = int(m.group(1)); print(b[m.end():m.end() + n].decode())')
auth_token="&token=$token"
auth_psw="&username=dl&psw=$IVCSD_PASSWORD"

# check URL AUTH: one announce must answer peers, not a refusal.
check() {
  local body
  body=$(curl -sf "$1/announce?info_hash=${enc[0]}&$q$2" | tr -c '[:print:]' '.')
  case $body in
    *"failure reason"*|"") echo "announce refused: $body" >&2; exit 1 ;;
  esac
}
# run_once NAME URL AUTH ROUND: one wrk run; prints it and appends its rate to rates[NAME].
# With cpu_pid set, also the CPU time (user + system, all threads) that process spent per
# answered request, appended to cpu[NAME]: a cost the other load on the machine hardly moves.
declare -A median rates cpu
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_once() {
  local name=$1 url=$2 auth=$3 r=$4 out rate ticks0=0 per=""
  local hdr=()
  [ -n "${cpu_pid:-}" ] && ticks0=$(cpu_ticks "$cpu_pid")
  [ -n "${CLOSE:-}" ] && hdr=(-H "Connection: close")
  out=$(wrk -t "$wthreads" -c "$conns" -d "${duration}s" --latency "${hdr[@]}" \
    -s "$repo/benches/announce.lua" "$url" -- "$auth" "${enc[@]}")
  rate=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  if [ -n "${cpu_pid:-}" ]; then
    per=$(python3 -c "print('%.1f' % (($(cpu_ticks "$cpu_pid") - $ticks0) * 1e6 / $(getconf CLK_TCK) / $(awk '/requests in/ {print $1}' <<<"$out")))")
    cpu[$name]="${cpu[$name]:-} $per"
    per=", tracker CPU $per µs/announce"
  fi
  # opentracker closes each connection after answering: wrk counts that as a read error.
  grep -q 'Non-2xx\|Socket errors' <<<"$out" && { echo "$out" | grep 'Non-2xx\|Socket errors' | sed 's/^ */  /' >&2; }
  echo "$name run $r: $rate announces/s, latency p50 $(awk '$1 == "50%" {print $2}' <<<"$out") p99 $(awk '$1 == "99%" {print $2}' <<<"$out")$per (load $(load))"
  rates[$name]="${rates[$name]:-} $rate"
}
# summarize NAME: the median of its runs.
summarize() {
  median[$1]=$(printf '%s\n' ${rates[$1]} | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  echo "$1 median: ${median[$1]} announces/s (runs:${rates[$1]})"
  [ -z "${cpu[$1]:-}" ] || echo "$1 tracker CPU per announce, median: $(cpu_median "$1") µs (runs:${cpu[$1]})"
}
cpu_median() { printf '%s\n' ${cpu[$1]} | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
# bench NAME URL AUTH: REPEAT runs in a row (opentracker).
bench() {
  local r
  check "$2" "$3"
  for r in $(seq "$repeat"); do run_once "$@" "$r"; done
  summarize "$1"
  check "$2" "$3"
}

kill "$tracker"
wait "$tracker" 2>/dev/null || true
for r in $(seq "$repeat"); do
  start_ivcsd "$work/audit-on.toml"
  cpu_pid=$tracker
  check "$base" "$auth_token"
  check "$base" "$auth_psw"
  run_once "ivcsd token, audit on" "$base" "$auth_token" "$r"
  CLOSE=1 run_once "ivcsd token, audit on, close" "$base" "$auth_token" "$r"
  run_once "ivcsd psw, audit on" "$base" "$auth_psw" "$r"
  kill "$tracker"
  wait "$tracker" 2>/dev/null || true
  start_ivcsd "$work/audit-off.toml"
  cpu_pid=$tracker
  check "$base" "$auth_token"
  # Also warms the remembered-password cache, as the audit-on round's check does.
  check "$base" "$auth_psw"
  run_once "ivcsd token, audit off" "$base" "$auth_token" "$r"
  run_once "ivcsd psw, audit off" "$base" "$auth_psw" "$r"
  kill "$tracker"
  wait "$tracker" 2>/dev/null || true
  cpu_pid=
done
for name in "ivcsd token, audit on" "ivcsd token, audit on, close" "ivcsd psw, audit on" \
  "ivcsd token, audit off" "ivcsd psw, audit off"; do
  summarize "$name"
done
audit_lines=$(wc -l <"$work/data/audit.log" 2>/dev/null || echo 0)
echo "audit log: $audit_lines lines, $(du -h "$work/data/audit.log" 2>/dev/null | cut -f1), hash chain: $("$bin" admin audit verify "$work/data/audit.log" 2>&1 | head -1)"

# --- opentracker -----------------------------------------------------------------------------
oport=$(free_port)
mkdir -p "$work/ot"
chmod 755 "$work/ot"
printf '%s\n' "${hashes[@]}" >"$work/ot/whitelist.txt"
chmod 644 "$work/ot/whitelist.txt"
printf 'access.whitelist /whitelist.txt\n' >"$work/ot/opentracker.conf"
opentracker -i 127.0.0.1 -p "$oport" -P "$oport" -d "$work/ot" -u nobody -f "$work/ot/opentracker.conf" \
  >"$work/ot/log" 2>&1 &
pids+=($!)
wait_port "$oport"
bench "opentracker" "http://127.0.0.1:$oport" ""

echo
echo "# Announces per second (median of $repeat), ratio to opentracker (unauthenticated)"
ot=${median[opentracker]}
for name in "ivcsd token, audit on" "ivcsd token, audit on, close" "ivcsd token, audit off" "ivcsd psw, audit on" "ivcsd psw, audit off" "opentracker"; do
  printf '%-24s %10.0f  %.2fx\n' "$name" "${median[$name]}" "$(python3 -c "print(${median[$name]} / $ot)")"
done
for a in token psw; do
  # Per round (the on and off runs of a round are back to back), then of the medians.
  printf 'audit log cost (%s): %s; of the medians: %.1f%%\n' "$a" \
    "$(python3 -c "
on = '${rates["ivcsd $a, audit on"]}'.split(); off = '${rates["ivcsd $a, audit off"]}'.split()
print('rounds ' + ', '.join('%.1f%%' % (100 * (1 - float(x) / float(y))) for x, y in zip(on, off)))")" \
    "$(python3 -c "print(100 * (1 - ${median["ivcsd $a, audit on"]} / ${median["ivcsd $a, audit off"]}))")"
  # The same in the tracker's CPU time per announce: steadier than wall-clock rates here.
  printf 'audit log cost (%s) in tracker CPU per announce: %s µs on, %s µs off: %+.1f%% CPU per announce\n' "$a" \
    "$(cpu_median "ivcsd $a, audit on")" "$(cpu_median "ivcsd $a, audit off")" \
    "$(python3 -c "print(100 * ($(cpu_median "ivcsd $a, audit on") / $(cpu_median "ivcsd $a, audit off") - 1))")"
done

# --- getcipher's RSA work against openssl -------------------------------------------------------
# benches/tracker.rs: its tracker/announce (audit on, off) and tracker/getcipher benches time
# requests over 8 keep-alive connections in one process (wall clock, printed as criterion gives
# them); a "getcipher rsa work" group, where a branch has it, times the RSA work in thread CPU
# time, printed per core.
[ "${SKIP_RSA:-}" = 1 ] && exit 0
echo
echo "# benches/tracker.rs (criterion): in-process announces and getcipher; RSA work per core where present; openssl speed (one core, CPU time)"
cargo bench --quiet --bench tracker -- --noplot 2>/dev/null | python3 -c '
import re, sys
name = None
for line in sys.stdin:
    if re.match(r"^[^\s]", line) and not re.match(r"^(Found|Benchmarking|Warning|Gnuplot)", line):
        name = re.split(r"\s+(time|thrpt|change):", line)[0].strip()
    for kind in ("time", "thrpt"):
        m = re.search(kind + r":\s+\[(.*?)\]", line)
        if not m or not name or "%" in m.group(1):  # skip the change against a last run
            continue
        print(f"{name:<40} {kind}: [{m.group(1)}]")
        cpu = re.match(r"\S+ \S+(?: cpu)? (\S+) (\S+)", m.group(1))
        if kind == "time" and name.startswith("getcipher rsa work") and cpu:
            v, u = float(cpu.group(1)), cpu.group(2)
            us = v * {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}[u]
            print(f"{name:<40} {us:8.1f} µs CPU  {1e6 / us:8.0f} /s per core")
'
openssl speed -seconds 3 rsa2048 rsa3072 2>/dev/null | grep -E '^rsa +[0-9]+ bits' |
  awk '{printf "openssl rsa%s: sign %s/s, verify %s/s -> bound for verify+encrypt: %.0f getcipher/s\n", $2, $6, $7, $7 / 2}'
