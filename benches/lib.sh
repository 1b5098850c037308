# Shared by the benchmark scripts (sourced, not run): a temporary work directory removed on
# exit, the background processes the script started (append their pids to `pids`) stopped on
# exit, and small helpers.
#
#   . "$repo/benches/lib.sh"; bench_workdir NAME

# Creates $work (readable by others: opentracker drops to nobody) and the exit trap.
bench_workdir() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/ivcsd-$1.XXXXXX")
  chmod 755 "$work"
  pids=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do
    # Only our own children that still run: a finished child's pid may belong to someone else
    # by now. Their children first: GNU time does not pass signals on to what it runs.
    [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$$" ] || continue
    pkill -P "$p" 2>/dev/null || true
    kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
  bench_restore_memory
}

# Guest memory that stays backed by the host for the run (transfer benchmarks on a VM).
#
# On a VM whose virtio-balloon reports free pages (this project's machine does), memory the guest
# frees is handed back to the host about 2 s later, and the next touch of each page faults in the
# host, which allocates and zeroes it. Writing a downloaded file into the page cache then costs
# 1-2.2 s of system CPU per GB instead of 0.2 (dd of 4 GiB: 9.1, 0.9 and 4.4 s of system time in
# three runs a minute apart), charged to whichever downloader happens to write into returned
# memory: a confounder of the CPU figures and the speed of every client, not a cost of any of
# them, and one that bare metal does not have. A benchmark leaves the machine's kernel settings
# alone unless asked: with BENCH_STABLE_MEMORY=1 this turns reporting off for the run
# (page_reporting_order above the largest order: no freed block qualifies), restored on exit,
# and touches $1 bytes of page cache once so that they are backed from the start. Either way it
# prints one comment line saying what it did, so every result file says which it was.
bench_stable_memory() {
  local param=/sys/module/page_reporting/parameters/page_reporting_order
  page_reporting_was=
  if [ "${BENCH_STABLE_MEMORY:-}" != 1 ]; then
    if [ -r "$param" ]; then
      echo "# free page reporting: left as it is (order $(cat "$param")); BENCH_STABLE_MEMORY=1 turns it off for the run"
    else
      echo "# free page reporting: not a reporting VM"
    fi
    return 0
  fi
  if [ ! -w "$param" ]; then
    echo "# free page reporting: BENCH_STABLE_MEMORY=1 asked, but $param is not writable here; left as it is"
    return 0
  fi
  # The setting before any harness changed it: a run killed before its exit trap (SIGKILL)
  # leaves it in the state file, and the next run restores that at its exit.
  local state=/run/ivcsd-bench-page-reporting-order
  if [ -s "$state" ]; then
    page_reporting_was=$(cat "$state")
  else
    page_reporting_was=$(cat "$param")
    echo "$page_reporting_was" >"$state"
  fi
  echo 11 >"$param"
  head -c "$1" /dev/zero >"$work/.warm"
  rm -f "$work/.warm"
  echo "# free page reporting: off for the run (order $page_reporting_was -> 11, restored at exit); $(($1 >> 20)) MiB of page cache touched first"
}

bench_restore_memory() {
  [ -n "${page_reporting_was:-}" ] || return 0
  echo "$page_reporting_was" >/sys/module/page_reporting/parameters/page_reporting_order &&
    rm -f /run/ivcsd-bench-page-reporting-order
  page_reporting_was=
}

# $work/authority.xml with the users every benchmark uses: admin, pub (publishes, authority 1)
# and dl (downloads, authority 1), all with the password in IVCSD_PASSWORD. Needs $bin.
bench_users() {
  export IVCSD_PASSWORD=bench-password
  local u
  for u in "admin 0 --admin" "pub 1" "dl 1"; do
    set -- $u
    "$bin" admin user add "$1" --authority "$2" ${3:-} --authority-file "$work/authority.xml" >/dev/null
  done
}

# Installs the Debian packages named (none: nothing), after checking that each one exists.
bench_apt_install() {
  [ $# -gt 0 ] || return 0
  echo "installing from Debian: $*" >&2
  local p
  for p in "$@"; do
    apt-cache policy "$p" | grep -q 'Candidate: (none)' && { echo "no Debian package $p" >&2; exit 1; }
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

# log2 of the piece length ivcsd picks for $1 bytes (docs/protocol.md section 5): the smallest
# power of two from 256 KiB to 16 MiB that keeps the piece count at or below 65,536. The plain
# torrents of the stock clients use it too, so that every client moves the same pieces.
bench_piece_log() {
  local log=18
  while [ $log -lt 24 ] && [ $((($1 + (1 << log) - 1) >> log)) -gt 65536 ]; do
    log=$((log + 1))
  done
  echo $log
}

# The hex info hash of a torrent that mktorrent wrote (for opentracker's whitelist).
bench_plain_info_hash() {
  /usr/bin/python3 - "$1" <<'EOF'
import hashlib, sys
data = open(sys.argv[1], "rb").read()
# The info dictionary is the last value of the top-level dictionary that mktorrent writes.
start = data.index(b"4:infod") + 6
print(hashlib.sha1(data[start:-1]).hexdigest())
EOF
}

# A port of 127.0.0.1 that was free a moment ago.
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 10 s for something to listen on port $1.
wait_port() {
  local n
  for n in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on port $1" >&2; exit 1
}

# The load average now (1, 5, 15 minutes).
load() { cut -d' ' -f1-3 /proc/loadavg; }

# A hex info hash percent-encoded for a query string.
pct() { /usr/bin/python3 -c 'import sys; print("".join("%%%02X" % b for b in bytes.fromhex(sys.argv[1])))' "$1"; }

# The CPU as every figure should name it: the model name and, since names such as "AMD EPYC"
# cover several generations, its family, model and stepping (e.g. "AMD EPYC, family 25 model 17
# stepping 1").
bench_cpu() {
  awk -F': *' '
    /^model name/ && !name { name = $2 }
    /^cpu family/ && !family { family = $2 }
    /^model\t/ && !model { model = $2 }
    /^stepping/ && !stepping { stepping = $2 }
    END { printf "%s, family %s model %s stepping %s\n", name, family, model, stepping }
  ' /proc/cpuinfo
}
