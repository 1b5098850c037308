#!/usr/bin/python3
"""The monitor of one benches/swarm.sh case: samples every host, notes each copy's completion,
and exits once every watched downloader has a complete copy.

    swarm_sample.py --hosts FILE --switch NETNS --t0 EPOCH --base FILE --label 'CLIENT\tRUN'
                    --progress OUT --events OUT --timeout SECONDS

--hosts is a TSV with one line per host: name, role, network namespace, the host's port on the
switch, where its progress comes from (`metrics:PORT`: the ivcsd process's GET /metrics on
127.0.0.1:PORT inside the host's namespace, `ivcsd_peer_content_bytes` have/total, i.e. verified
pieces; `file:PATH`: the line that benches/compare_lt.py --progress keeps there, libtorrent's
verified wanted bytes; `-`: none), the log whose line containing MARKER means "complete copy"
(`-`: not watched), MARKER, and the pid whose death before that line fails the case.

Every 0.5 s it appends to --progress one line per host: the label, host, role, seconds since t0,
fraction complete (`-` when the client did not answer, or for ivcsd on every other sample: see
METRICS_FRESH_AFTER; the last sample has every fraction) and the bytes and packets the host
received and sent, read from the host's port on the switch (/proc/net/dev inside the switch
namespace, where the port's tx is what the host received after its download limit, and its rx
what the host sent after its upload limit), counted from --base, the switch's /proc/net/dev at
t0. Every 0.1 s it reads the new lines of each watched log; the first marker line gives a
`complete` event in --events (so completion times are to 0.1 s), and a --progress line for that
host with fraction 1 at that time.

Exit status: 0 every watched host completed, 2 --timeout passed first, 3 a watched process died
before completing (its log's last lines are printed on stderr).
"""
import argparse
import ctypes
import os
import socket
import sys
import time

CLONE_NEWNET = 0x40000000
SAMPLE_EVERY = 0.5
TICK = 0.1
# An ivcsd process renders its metrics page at most once a second and serves that page to every
# scrape in between (src/metrics.rs, RENDER_INTERVAL), so its fraction is read on every second
# sample, each time at least this long after the last read of that host: always a fresh page.
METRICS_FRESH_AFTER = 1.02

libc = ctypes.CDLL(None, use_errno=True)


class Host:
    def __init__(self, fields):
        self.name, self.role, netns, self.port, progress, log, marker, pid = fields
        self.ns_fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        self.progress = progress
        self.log = None if log == "-" else log
        self.marker = marker
        self.pid = None if pid == "-" else int(pid)
        self.last_scrape = -1e9
        self.log_offset = 0
        self.log_rest = ""
        self.completed = None


def enter(ns_fd):
    if libc.setns(ns_fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def read_net_dev(text):
    """{interface: (rx_bytes, rx_packets, tx_bytes, tx_packets)} from /proc/net/dev."""
    counters = {}
    for line in text.splitlines()[2:]:
        name, values = line.split(":", 1)
        v = values.split()
        counters[name.strip()] = (int(v[0]), int(v[1]), int(v[8]), int(v[9]))
    return counters


def scrape_fraction(port):
    """have/total from an ivcsd process's metrics in the current namespace, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    have = total = None
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        if line.startswith('ivcsd_peer_content_bytes{state="have"}'):
            have = int(line.split()[-1])
        elif line.startswith('ivcsd_peer_content_bytes{state="total"}'):
            total = int(line.split()[-1])
    if have is None or not total:
        return 0.0 if have is not None else None
    return have / total


def file_fraction(path):
    try:
        with open(path) as f:
            return float(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def fraction_of(host, metrics_due):
    if host.progress.startswith("metrics:"):
        if not metrics_due:
            return None
        host.last_scrape = time.time()
        enter(host.ns_fd)
        return scrape_fraction(int(host.progress.split(":", 1)[1]))
    if host.progress.startswith("file:"):
        return file_fraction(host.progress.split(":", 1)[1])
    return None


def check_log(host, now):
    """Reads what the host's log gained; notes the first completion marker."""
    try:
        with open(host.log, errors="replace") as f:
            f.seek(host.log_offset)
            new = f.read()
            host.log_offset = f.tell()
    except OSError:
        return
    lines = (host.log_rest + new).split("\n")
    host.log_rest = lines.pop()
    if any(host.marker in line for line in lines):
        host.completed = now


def died(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def main():
    p = argparse.ArgumentParser()
    for name in ("hosts", "switch", "base", "label", "progress", "events"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--timeout", type=float, required=True)
    args = p.parse_args()
    label = args.label.replace("\\t", "\t")
    with open(args.hosts) as f:
        hosts = [Host(line.rstrip("\n").split("\t")) for line in f if line.strip()]
    switch_fd = os.open(f"/var/run/netns/{args.switch}", os.O_RDONLY)
    with open(args.base) as f:
        base = read_net_dev(f.read())
    watched = [h for h in hosts if h.log]
    progress = open(args.progress, "a", buffering=1)
    events = open(args.events, "a", buffering=1)

    def write_row(h, t, counters, fraction):
        # The port's tx is what the host received; its rx what the host sent.
        rx_b, rx_p, tx_b, tx_p = (a - b for a, b in zip(counters[h.port], base[h.port]))
        shown = "-" if fraction is None else f"{fraction:.5f}"
        progress.write(f"{label}\t{h.name}\t{h.role}\t{t:.3f}\t{shown}\t{tx_b}\t{tx_p}\t{rx_b}\t{rx_p}\n")

    def switch_counters():
        enter(switch_fd)
        with open("/proc/self/net/dev") as f:
            return read_net_dev(f.read())

    def sample(metrics_due):
        if metrics_due:
            # Waits (rarely more than a few ms) so that every page read is a fresh one.
            wait = max((h.last_scrape + METRICS_FRESH_AFTER for h in hosts), default=0) - time.time()
            if wait > 0:
                time.sleep(wait)
        t = time.time() - args.t0
        counters = switch_counters()
        for h in hosts:
            write_row(h, t, counters, fraction_of(h, metrics_due))

    next_sample = args.t0
    samples = 0
    status = 0
    while True:
        t = time.time() - args.t0
        for h in watched:
            if h.completed is None:
                check_log(h, t)
                if h.completed is not None:
                    events.write(f"{label}\t{h.name}\t{h.role}\tcomplete\t{t:.3f}\n")
                    # The client has verified every piece: the curve's end, to 0.1 s.
                    write_row(h, t, switch_counters(), 1.0)
        if time.time() >= next_sample:
            sample(samples % 2 == 0)
            samples += 1
            next_sample += SAMPLE_EVERY
        if all(h.completed is not None for h in watched):
            sample(True)
            break
        dead = [h for h in watched if h.completed is None and h.pid and died(h.pid)]
        if dead:
            for h in dead:
                print(f"{h.name} ({h.role}) exited before its copy was complete; its log ends:", file=sys.stderr)
                with open(h.log, errors="replace") as f:
                    sys.stderr.writelines(f.readlines()[-5:])
            status = 3
            break
        if t > args.timeout:
            late = ", ".join(h.name for h in watched if h.completed is None)
            print(f"timeout after {args.timeout:.0f} s; not complete: {late}", file=sys.stderr)
            status = 2
            break
        time.sleep(TICK)
    sys.exit(status)


if __name__ == "__main__":
    main()
