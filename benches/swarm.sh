#!/usr/bin/env bash
# The swarm over links of limited bandwidth, in network namespaces on one machine (issue 18).
#
#   benches/swarm.sh [--downloaders N] [--size-mib S] [--clients LIST] [--runs R] ...
#   DOWNLOADERS=12 SIZE_MIB=96 SEEDER_UP=40 DOWNLOADER_UP=16 benches/swarm.sh
#
# Every parameter is an environment variable, or the flag of the same name in lower case with
# dashes (--relay-up 100 is RELAY_UP=100); rates are Mbit/s (10^6 bit/s, as tc counts them) and 0
# is unlimited:
#   DOWNLOADERS (4)        N downloaders, started at once, seeding once done
#   SIZE_MIB (16)          the file, F
#   SEEDER_UP (40), SEEDER_DOWN (0)
#   DOWNLOADER_UP (16), DOWNLOADER_DOWN (0)     for the late joiners too
#   RELAYS (0)             K relays: `ivcsd peer relay` assigned to the torrent (ivcsd), a
#                          libtorrent downloader that is not timed (libtorrent: "helper peers");
#                          they start with the downloaders, with nothing
#   RELAY_UP (100), RELAY_DOWN (0)
#   LATE (0), LATE_DELAY (10)   downloaders that start LATE_DELAY s after the others
#   CLIENTS (ivcsd,ivcsd-aes,lt-plain,lt-rc4)
#                          ivcsd: RC4+ (`peer publish`); ivcsd-aes: `--cipher aes-256-ctr`;
#                          lt-plain, lt-rc4: libtorrent (python3-libtorrent, benches/compare_lt.py)
#                          with MSE/PE disabled, or forced at the RC4 level, on one plain torrent
#                          made by mktorrent with the piece length ivcsd picks, and opentracker
#   RUNS (1)               the clients alternate: run 1 of each client, then run 2 of each, ...
#   TBF_LATENCY_MS (50)    how long a packet may wait in a limited link's queue (tbf latency)
#   CASE_TIMEOUT           seconds before a case fails (default 4 T_min + 60)
#   OUT                    where the results go (default benches/results/swarm-nN-SMiB-DATE)
#   PLOT (auto)            auto: build and run the plotting program (examples/swarm_plot), 0: do
#                          not plot, or the path of a built swarm_plot
#   IVCSD_BIN              the ivcsd binary (default: cargo build --release, target/release/ivcsd)
#   SWARM_NET (10.77.0)    the /24 used inside the namespaces
#
# The topology: a namespace "sw" holds a bridge; every host (the tracker, the seeder, the relays,
# the downloaders, the late joiners) is a namespace with one veth to it and an address in
# SWARM_NET.0/24 (tracker .1, seeder .2, relays .11-, downloaders .51-, late joiners .201-). A
# host's upload limit is a tbf qdisc on its side of the veth, its download limit a tbf qdisc on
# the switch's side; no delay is added (netem is not in this kernel). The veths send one TCP
# segment per frame (gso_max_segs 1), as a real link does: without it, TCP would hand them up to
# 64 KiB at a time with one set of headers, and tbf and the counters would see fewer, larger
# frames than any Ethernet carries. Nothing is made outside
# these namespaces, whose names start with ivs<pid>-; at exit every process in them is stopped
# and they are removed. The trackers (ivcsd's, and Debian's opentracker for libtorrent) run on
# the tracker host for the whole run; each case starts its seeder and waits until the tracker
# lists it, then starts everything else at t = 0, and ends when every downloader (late joiners
# included) has a complete copy, which is then compared with the source byte for byte.
#
# What it prints per case (client and run):
# - first and last copy: seconds from t = 0 until the first and the last of the N downloaders
#   printed that its copy is complete (ivcsd: "downloaded and verified", libtorrent: every piece
#   verified; read every 0.1 s);
# - T_min, the fluid-model bound: max(F/U_s, F/D_min, N F / (U_s + N U_d)), with U_s the
#   seeder's upload, U_d a downloader's, D_min the smallest download limit. With K relays it
#   counts the relays' upload and their own full copy: max(F/U_s, F/D_min, (N + K) F / (U_s +
#   N U_d + K U_r)), D_min over the relays too; the bound without relays is printed beside it.
#   Late joiners are left out of the bound and of first and last copy. F counts file bytes while
#   the limits count whole frames, so TCP/IP and Ethernet headers alone keep the efficiency at or
#   below 1448/1514 = 0.956;
# - efficiency T_min / T, T the last copy;
# - received / F per downloader: "payload" is the TCP payload, the bytes the host's port on the
#   switch delivered minus 66 bytes (Ethernet, IP and TCP with timestamps) per packet, so that the
#   ACKs of its own uploads do not count; "frames" is all of it;
# - the seeder's upload utilisation: its port's bytes per 0.5 s sample over SEEDER_UP, as a mean
#   until it had sent F of payload (every piece once, at best) and until the last copy, the share
#   of samples before the former that were at least 95 % busy, and a timeline;
# - CPU seconds per host over the case (utime + stime of every process in its namespace);
# - relays: when each had a full copy and their upload utilisation; late joiners: when each had
#   its first verified piece and its copy, from its own start.
# Files in OUT: summary.txt (what it printed), params.env, progress.tsv (every 0.5 s per host:
# the bytes and packets received and sent at its switch port, and the fraction complete as the
# client reports verified data: ivcsd through its GET /metrics `ivcsd_peer_content_bytes` every
# 1 s, since it renders that page at most once a second; libtorrent through compare_lt.py
# --progress every 0.5 s), events.tsv (completions), cpu.tsv, and
# swarm.svg: each downloader's completed fraction over time, one panel per client.
#
# Needs root (namespaces), iproute2 (ip, tc) and, for the libtorrent clients, python3-libtorrent,
# opentracker and mktorrent (installed from Debian when missing). It works in a temporary
# directory (TMPDIR; about (1 + N + K + LATE) x F of disk).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

settings=(DOWNLOADERS SIZE_MIB SEEDER_UP SEEDER_DOWN DOWNLOADER_UP DOWNLOADER_DOWN RELAYS RELAY_UP
  RELAY_DOWN LATE LATE_DELAY CLIENTS RUNS TBF_LATENCY_MS CASE_TIMEOUT OUT PLOT IVCSD_BIN SWARM_NET)
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --*=*) key=${1%%=*} value=${1#*=} ;;
    --*) [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }; key=$1 value=$2; shift ;;
    *) echo "unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
  shift
  key=${key#--} key=${key^^} key=${key//-/_}
  [[ " ${settings[*]} " == *" $key "* ]] || { echo "unknown flag --${key,,} (--help)" >&2; exit 2; }
  printf -v "$key" %s "$value"
done
: "${DOWNLOADERS:=4}" "${SIZE_MIB:=16}" "${SEEDER_UP:=40}" "${SEEDER_DOWN:=0}"
: "${DOWNLOADER_UP:=16}" "${DOWNLOADER_DOWN:=0}" "${RELAYS:=0}" "${RELAY_UP:=100}" "${RELAY_DOWN:=0}"
: "${LATE:=0}" "${LATE_DELAY:=10}" "${CLIENTS:=ivcsd,ivcsd-aes,lt-plain,lt-rc4}" "${RUNS:=1}"
: "${TBF_LATENCY_MS:=50}" "${PLOT:=auto}" "${SWARM_NET:=10.77.0}"
ndl=$DOWNLOADERS nrelay=$RELAYS nlate=$LATE
size=$((SIZE_MIB * 1024 * 1024))
IFS=, read -r -a clients <<<"$CLIENTS"
for c in "${clients[@]}"; do
  case $c in ivcsd | ivcsd-aes | lt-plain | lt-rc4) ;; *) echo "unknown client $c" >&2; exit 2 ;; esac
done
[ "$ndl" -ge 1 ] && [ "$ndl" -le 150 ] && [ "$nrelay" -le 40 ] && [ "$nlate" -le 50 ] ||
  { echo "at most 150 downloaders, 40 relays and 50 late joiners" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "swarm.sh makes network namespaces: run it as root" >&2; exit 1; }

. "$repo/benches/lib.sh"
need=()
command -v ip >/dev/null && command -v tc >/dev/null || need+=(iproute2)
if [[ ",$CLIENTS," == *,lt-* ]]; then
  /usr/bin/python3 -c 'import libtorrent' 2>/dev/null || need+=(python3-libtorrent)
  command -v opentracker >/dev/null || need+=(opentracker)
  command -v mktorrent >/dev/null || need+=(mktorrent)
fi
bench_apt_install "${need[@]}"

if [ -n "${IVCSD_BIN:-}" ]; then
  bin=$IVCSD_BIN
else
  cargo build --release --quiet --locked --bin ivcsd
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/ivcsd
fi
case $PLOT in
  0) plot= ;;
  auto)
    cargo build --release --quiet --locked --example swarm_plot
    plot=${CARGO_TARGET_DIR:-$repo/target}/release/examples/swarm_plot
    ;;
  *) plot=$PLOT ;;
esac
tck=$(getconf CLK_TCK)
out=${OUT:-$repo/benches/results/swarm-n$ndl-${SIZE_MIB}MiB-$(date +%m%d-%H%M)}
mkdir -p "$out"
: >"$out/progress.tsv"
: >"$out/events.tsv"
: >"$out/cpu.tsv"
exec > >(tee "$out/summary.txt")

# ---------------------------------------------------------------------------------------------
# The topology.
nsp=ivs$$
namespaces=()
hosts=()
declare -A addr_of role_of

bench_workdir swarm
trap swarm_cleanup EXIT

# Stops every process in namespace $1 (TERM, then KILL after 5 s) and waits for them.
stop_ns() {
  local p n
  for p in $(ip netns pids "$1" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  for n in $(seq 50); do
    [ -z "$(ip netns pids "$1" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  for p in $(ip netns pids "$1" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
}

swarm_cleanup() {
  local i
  # The tracker host last, so that the others' `stopped` announces reach it.
  for ((i = ${#namespaces[@]} - 1; i >= 0; i--)); do stop_ns "${namespaces[$i]}"; done
  for ((i = ${#namespaces[@]} - 1; i >= 0; i--)); do ip netns del "${namespaces[$i]}" 2>/dev/null || true; done
  # The tee of summary.txt ends once nothing writes to it: before bench_cleanup waits for every
  # child, which could include it.
  exec >&2
  bench_cleanup
}

# tbf for RATE Mbit/s on DEV in namespace NS (nothing for 0): a burst of 10 ms of the rate (at
# least 10 frames), a queue of TBF_LATENCY_MS.
limit() {
  local ns=$1 dev=$2 rate=$3 kbit burst
  kbit=$(awk -v r="$rate" 'BEGIN {printf "%d", r * 1000}')
  [ "$kbit" -gt 0 ] || return 0
  burst=$((kbit * 1000 / 8 / 100))
  [ $burst -ge 15140 ] || burst=15140
  tc -n "$ns" qdisc add dev "$dev" root tbf rate "${kbit}kbit" burst "$burst" latency "${TBF_LATENCY_MS}ms"
}

ns_make() {
  ip netns add "$1"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}

# add_host NAME ROLE LAST_OCTET UP DOWN
add_host() {
  local name=$1 ns=$nsp-$1 port=p-$1
  ns_make "$ns"
  ip -n "$ns" link add eth0 gso_max_segs 1 type veth peer name "$port" gso_max_segs 1 netns "$nsp-sw"
  ip -n "$ns" addr add "$SWARM_NET.$3/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$nsp-sw" link set "$port" master br0 up
  limit "$ns" eth0 "$4"
  limit "$nsp-sw" "$port" "$5"
  hosts+=("$name")
  addr_of[$name]=$SWARM_NET.$3
  role_of[$name]=$2
}

ns_make "$nsp-sw"
ip -n "$nsp-sw" link add br0 type bridge
ip -n "$nsp-sw" link set br0 up
add_host tr tracker 1 0 0
add_host s seeder 2 "$SEEDER_UP" "$SEEDER_DOWN"
for i in $(seq "$nrelay"); do add_host "r$i" relay $((10 + i)) "$RELAY_UP" "$RELAY_DOWN"; done
for i in $(seq "$ndl"); do add_host "d$i" downloader $((50 + i)) "$DOWNLOADER_UP" "$DOWNLOADER_DOWN"; done
for i in $(seq "$nlate"); do add_host "l$i" late $((200 + i)) "$DOWNLOADER_UP" "$DOWNLOADER_DOWN"; done

# on HOST CMD...: runs CMD in HOST's namespace.
on() { local h=$1; shift; ip netns exec "$nsp-$h" "$@"; }

# Waits up to 10 s for something to listen on ADDR:PORT, seen from HOST.
wait_listen() {
  local n
  for n in $(seq 100); do
    on "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $2:$3 (seen from $1)" >&2; exit 1
}

ns_cpu() {
  local p
  for p in $(ip netns pids "$nsp-$1" 2>/dev/null); do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk -v t="$tck" '{s += $14 + $15 + $16 + $17} END {printf "%.2f", s / t}'
}

# ---------------------------------------------------------------------------------------------
# The data, the trackers and the torrents.
mkdir -p "$work/src" "$work/id" "$work/copies"
head -c "$size" /dev/urandom >"$work/src/data.bin"
chmod -R a+rX "$work/src"
piece_log=$(bench_piece_log "$size")

t_min_no_relays=$(awk -v F="$size" -v n="$ndl" -v us="$SEEDER_UP" -v ud="$DOWNLOADER_UP" -v dd="$DOWNLOADER_DOWN" '
  function cap(r) { return r > 0 ? r * 1e6 : 1e300 }
  BEGIN { f = F * 8; t = f / cap(us); if (f / cap(dd) > t) t = f / cap(dd)
          if (n * f / (cap(us) + n * cap(ud)) > t) t = n * f / (cap(us) + n * cap(ud)); printf "%.2f", t }')
timeout=${CASE_TIMEOUT:-$(awk -v t="$t_min_no_relays" -v d="$LATE_DELAY" -v l="$nlate" 'BEGIN {printf "%d", 4 * t + 60 + (l > 0 ? d : 0)}')}

cat >"$out/params.env" <<EOF
DOWNLOADERS=$ndl
SIZE_BYTES=$size
SEEDER_UP=$SEEDER_UP
SEEDER_DOWN=$SEEDER_DOWN
DOWNLOADER_UP=$DOWNLOADER_UP
DOWNLOADER_DOWN=$DOWNLOADER_DOWN
RELAYS=$nrelay
RELAY_UP=$RELAY_UP
RELAY_DOWN=$RELAY_DOWN
LATE=$nlate
LATE_DELAY=$LATE_DELAY
CLIENTS=$CLIENTS
RUNS=$RUNS
PIECE_BYTES=$((1 << piece_log))
EOF

echo "# benches/swarm.sh: $ndl downloaders, ${SIZE_MIB} MiB, seeder up $SEEDER_UP down $SEEDER_DOWN, downloaders up $DOWNLOADER_UP down $DOWNLOADER_DOWN Mbit/s (0: unlimited)$([ "$nrelay" -gt 0 ] && echo ", $nrelay relays up $RELAY_UP down $RELAY_DOWN")$([ "$nlate" -gt 0 ] && echo ", $nlate late joiners after $LATE_DELAY s")"
echo "# $(date -u '+%F %T UTC'), $(nproc) cores ($(bench_cpu)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; load average at start: $(load)"
echo "# $("$bin" -V), $("$bin" --version 2>/dev/null | sed -n 2p)$([[ ",$CLIENTS," == *,lt-* ]] && echo ", libtorrent $(/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)'), opentracker (Debian $(dpkg-query -W -f='${Version}' opentracker))")"
echo "# piece length $((1 << (piece_log - 10))) KiB; tbf queue ${TBF_LATENCY_MS} ms; clients $CLIENTS, $RUNS run(s) each; results in ${out#"$repo"/}"

itracker=http://${addr_of[tr]}:6969/announce
otracker=http://${addr_of[tr]}:6970/announce
declare -A torrent_of hash_of
if [[ ",$CLIENTS," == *,ivcsd* ]]; then
  bench_users
  for i in $(seq "$nrelay"); do
    "$bin" admin user add "relay$i" --authority 99 --authority-file "$work/authority.xml" >/dev/null
  done
  ip netns exec "$nsp-tr" "$bin" --quiet tracker --authority "$work/authority.xml" --listen "${addr_of[tr]}:6969" \
    --data-dir "$work/ivcsd-tracker" >"$work/ivcsd-tracker.log" 2>&1 &
  pids+=($!)
  for h in "${hosts[@]}"; do wait_listen "$h" "${addr_of[tr]}" 6969; done
  for h in "${hosts[@]}"; do
    [ "$h" = tr ] || "$bin" --quiet peer keygen --identity "$work/id/$h.pem" >/dev/null
  done
  for c in ivcsd ivcsd-aes; do
    [[ ",$CLIENTS," == *,$c,* ]] || continue
    suite=rc4+
    [ $c = ivcsd-aes ] && suite=aes-256-ctr
    torrent_of[$c]=$work/$c.torrent
    on s "$bin" --quiet peer publish "$work/src/data.bin" --tracker "$itracker" --user pub \
      --identity "$work/pub.pem" --output "${torrent_of[$c]}" --cipher "$suite" --no-seed >/dev/null
    hash_of[$c]=$("$bin" torrent show "${torrent_of[$c]}" | awk '/^info hash/ {print $3}')
    on tr "$bin" --quiet admin --tracker "$itracker" --user admin torrent set-authority "${hash_of[$c]}" 9 >/dev/null
  done
fi
if [[ ",$CLIENTS," == *,lt-* ]]; then
  mkdir -p "$work/ot"
  chmod 755 "$work/ot"
  mktorrent -p -l "$piece_log" -a "$otracker" -o "$work/plain.torrent" "$work/src/data.bin" >/dev/null
  bench_plain_info_hash "$work/plain.torrent" >"$work/ot/whitelist.txt"
  chmod 644 "$work/ot/whitelist.txt"
  printf 'access.whitelist /whitelist.txt\n' >"$work/ot/opentracker.conf"
  ip netns exec "$nsp-tr" opentracker -i "${addr_of[tr]}" -p 6970 -P 6970 -d "$work/ot" -u nobody \
    -f "$work/ot/opentracker.conf" >"$work/ot/log" 2>&1 &
  pids+=($!)
  for h in "${hosts[@]}"; do wait_listen "$h" "${addr_of[tr]}" 6970; done
fi

# ---------------------------------------------------------------------------------------------
# One case.
metrics_port=9100

# ivcsd_swarm CLIENT: the tracker's "swarm:" line for CLIENT's torrent.
ivcsd_swarm() {
  on tr "$bin" --quiet admin --tracker "$itracker" --user admin torrent show "${hash_of[$1]}" 2>/dev/null |
    awk '/^swarm:/ {print $2, $4}'
}

# start_seeder CLIENT: starts the seeder and waits until the tracker lists it.
start_seeder() {
  local c=$1 n
  if [[ $c == ivcsd* ]]; then
    ip netns exec "$nsp-s" "$bin" --quiet peer seed "${torrent_of[$c]}" --data "$work/src/data.bin" --user pub \
      --identity "$work/pub.pem" --listen "${addr_of[s]}:6881" --metrics-listen "127.0.0.1:$metrics_port" \
      >"$work/log-s" 2>&1 &
    pids+=($!)
    for n in $(seq 600); do
      [ "$(ivcsd_swarm "$c" | cut -d' ' -f1)" -ge 1 ] 2>/dev/null && return 0
      sleep 0.2
    done
    echo "the ivcsd seeder did not reach the tracker (swarm: $(ivcsd_swarm "$c"))" >&2; cat "$work/log-s" >&2; exit 1
  fi
  ip netns exec "$nsp-s" /usr/bin/python3 "$repo/benches/compare_lt.py" seed "$work/plain.torrent" "$work/src" 6881 "${c#lt-}" \
    --listen "${addr_of[s]}" >"$work/log-s" 2>&1 &
  pids+=($!)
  for n in $(seq 1200); do grep -q seeding "$work/log-s" && break; sleep 0.1; done
  grep -q seeding "$work/log-s" || { echo "the libtorrent seeder did not start" >&2; cat "$work/log-s" >&2; exit 1; }
  sleep 2 # its first announce
}

# start_peer CLIENT HOST: starts a downloader, relay or late joiner; prints its progress source.
start_peer() {
  local c=$1 h=$2 delay=0 cmd
  [ "${role_of[$h]}" = late ] && delay=$LATE_DELAY
  mkdir -p "$work/copies/$h"
  if [ "${role_of[$h]}" = relay ] && [[ $c == ivcsd* ]]; then
    cmd=("$bin" --quiet peer relay --tracker "$itracker" --user "relay${h#r}" --identity "$work/id/$h.pem"
      --store "$work/copies/$h" --listen "${addr_of[$h]}:6881" --metrics-listen "127.0.0.1:$metrics_port")
  elif [[ $c == ivcsd* ]]; then
    cmd=("$bin" --quiet peer download "${torrent_of[$c]}" --output "$work/copies/$h" --user dl --seed
      --identity "$work/id/$h.pem" --listen "${addr_of[$h]}:6881" --metrics-listen "127.0.0.1:$metrics_port")
  else
    cmd=(/usr/bin/python3 "$repo/benches/compare_lt.py" download "$work/plain.torrent" "$work/copies/$h" 6881
      "${c#lt-}" --listen "${addr_of[$h]}" --keep-seeding --progress "$work/copies/$h.progress")
  fi
  # A late joiner sleeps in its namespace and then becomes the client (same pid).
  ip netns exec "$nsp-$h" bash -c "sleep $delay; exec \"\$@\"" - "${cmd[@]}" >"$work/log-$h" 2>&1 &
  pids+=($!)
  started_pid=$!
}

# run_case CLIENT RUN
run_case() {
  local c=$1 run=$2 h t0 marker progress watch sampler_status=0
  [[ $c == ivcsd* ]] && marker="downloaded and verified" || marker=complete
  if [[ $c == ivcsd* ]]; then
    for i in $(seq "$nrelay"); do
      on tr "$bin" --quiet admin --tracker "$itracker" --user admin relay assign "${hash_of[$c]}" "relay$i" >/dev/null
    done
  fi
  start_seeder "$c"
  declare -A cpu0
  for h in "${hosts[@]}"; do cpu0[$h]=$(ns_cpu "$h"); done
  on sw cat /proc/net/dev >"$work/net-base"
  t0=$EPOCHREALTIME
  : >"$work/sample-hosts.tsv"
  for h in "${hosts[@]}"; do
    case ${role_of[$h]} in
      tracker) printf '%s\t%s\t%s\tp-%s\t-\t-\t-\t-\n' "$h" tracker "$nsp-$h" "$h" ;;
      seeder)
        [[ $c == ivcsd* ]] && progress=metrics:$metrics_port || progress=-
        printf '%s\t%s\t%s\tp-%s\t%s\t-\t-\t-\n' "$h" seeder "$nsp-$h" "$h" "$progress"
        ;;
      *)
        start_peer "$c" "$h"
        [[ $c == ivcsd* ]] && progress=metrics:$metrics_port || progress=file:$work/copies/$h.progress
        watch="$work/log-$h"
        [ "${role_of[$h]}" = relay ] && watch=-
        printf '%s\t%s\t%s\tp-%s\t%s\t%s\t%s\t%s\n' "$h" "${role_of[$h]}" "$nsp-$h" "$h" "$progress" \
          "$watch" "$marker" "$started_pid"
        ;;
    esac >>"$work/sample-hosts.tsv"
  done
  # In the background, so that a signal to this script ends the case at once (bash runs a trap
  # only once the foreground command has returned, but interrupts `wait`).
  /usr/bin/python3 "$repo/benches/swarm_sample.py" --hosts "$work/sample-hosts.tsv" --switch "$nsp-sw" \
    --t0 "$t0" --base "$work/net-base" --label "$c\t$run" --progress "$out/progress.tsv" \
    --events "$out/events.tsv" --timeout "$timeout" &
  pids+=($!)
  wait $! || sampler_status=$?
  for h in "${hosts[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$c" "$run" "$h" "${role_of[$h]}" \
      "$(awk -v a="${cpu0[$h]}" -v b="$(ns_cpu "$h")" 'BEGIN {printf "%.2f", b - a}')" >>"$out/cpu.tsv"
  done
  for h in "${hosts[@]}"; do [ "$h" = tr ] || stop_ns "$nsp-$h"; done
  if [ "$sampler_status" -ne 0 ]; then
    echo "$c run $run failed; the last lines of each log:" >&2
    for h in "${hosts[@]}"; do [ -s "$work/log-$h" ] && { echo "== $h" >&2; tail -n 3 "$work/log-$h" >&2; }; done
    exit 1
  fi
  local verified=0
  for h in "${hosts[@]}"; do
    case ${role_of[$h]} in downloader | late) ;; relay) [[ $c == lt-* ]] || continue ;; *) continue ;; esac
    cmp -s "$work/src/data.bin" "$work/copies/$h/data.bin" ||
      { echo "$c run $run: $h's copy differs from the source" >&2; exit 1; }
    verified=$((verified + 1))
  done
  printf '%s\t%s\tverified\t%s\n' "$c" "$run" "$verified" >>"$out/events.tsv"
  rm -rf "$work"/copies/* "$work"/log-*
  if [[ $c == ivcsd* ]]; then
    for i in $(seq "$nrelay"); do
      on tr "$bin" --quiet admin --tracker "$itracker" --user admin relay unassign "${hash_of[$c]}" "relay$i" >/dev/null
    done
    # The next case of this torrent starts from an empty swarm.
    for n in $(seq 50); do [ "$(ivcsd_swarm "$c")" = "0 0" ] && break; sleep 0.1; done
  fi
  /usr/bin/python3 "$repo/benches/swarm_report.py" --case "$c" "$run" "$out"
}

for run in $(seq "$RUNS"); do
  for c in "${clients[@]}"; do run_case "$c" "$run"; done
done
echo
/usr/bin/python3 "$repo/benches/swarm_report.py" --summary "$out"
if [ -n "$plot" ]; then
  "$plot" "$out/progress.tsv" "$out/swarm.svg" --t-min "$(/usr/bin/python3 "$repo/benches/swarm_report.py" --t-min "$out")" \
    --title "$(/usr/bin/python3 "$repo/benches/swarm_report.py" --title "$out")"
  echo "# plot: ${out#"$repo"/}/swarm.svg"
fi
