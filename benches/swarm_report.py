#!/usr/bin/python3
"""The figures of benches/swarm.sh, from the files it keeps in its results directory.

    swarm_report.py --case CLIENT RUN DIR   one case, printed as soon as it has run
    swarm_report.py --summary DIR           every case: a table, and a row in the form of issue 18
    swarm_report.py --t-min DIR | --title DIR   the bound and the case in a line, for the figure

It reads DIR/params.env, progress.tsv, events.tsv and cpu.tsv (described in swarm.sh's header);
the bounds and the measures are defined there too.
"""
import math
import sys
from collections import defaultdict

# Ethernet (14), IPv4 (20) and TCP with the timestamp option (32): what every frame of a TCP
# connection carries besides payload, so that payload = frame bytes - 66 x frames.
HEADER_BYTES = 66
BUSY = 0.95


def read_params(d):
    params = {}
    for line in open(f"{d}/params.env"):
        k, v = line.rstrip("\n").split("=", 1)
        params[k] = v
    num = {k: float(v) for k, v in params.items() if k != "CLIENTS"}
    num["CLIENTS"] = params["CLIENTS"].split(",")
    return num


def rate(mbit):
    """bit/s of a limit in Mbit/s; 0 is unlimited."""
    return mbit * 1e6 if mbit > 0 else math.inf


def bounds(p):
    """(T_min, T_min without relays): the fluid-model bounds of swarm.sh's header."""
    f = p["SIZE_BYTES"] * 8
    n, k = p["DOWNLOADERS"], p["RELAYS"]
    us, ud, dd = rate(p["SEEDER_UP"]), rate(p["DOWNLOADER_UP"]), rate(p["DOWNLOADER_DOWN"])
    ur, dr = rate(p["RELAY_UP"]), rate(p["RELAY_DOWN"])
    without = max(f / us, f / dd, n * f / (us + n * ud))
    if k == 0:
        return without, without
    with_copy = max(f / us, f / min(dd, dr), (n + k) * f / (us + n * ud + k * ur))
    return with_copy, without


class Case:
    """One client's run: samples per host, completions, CPU."""

    def __init__(self, d, client, run):
        self.client, self.run = client, run
        self.samples = defaultdict(list)  # host -> [(t, fraction, rx_b, rx_p, tx_b, tx_p)]
        self.role = {}
        for line in open(f"{d}/progress.tsv"):
            c, r, host, role, t, frac, rx_b, rx_p, tx_b, tx_p = line.rstrip("\n").split("\t")
            if (c, r) != (client, run):
                continue
            self.role[host] = role
            self.samples[host].append(
                (float(t), None if frac == "-" else float(frac), int(rx_b), int(rx_p), int(tx_b), int(tx_p)))
        self.complete, self.verified = {}, None
        for line in open(f"{d}/events.tsv"):
            fields = line.rstrip("\n").split("\t")
            if tuple(fields[:2]) != (client, run):
                continue
            if fields[2] == "verified":
                self.verified = int(fields[3])
            elif fields[4] == "complete":
                self.complete[fields[2]] = float(fields[5])
        self.cpu = {}
        for line in open(f"{d}/cpu.tsv"):
            c, r, host, role, seconds = line.rstrip("\n").split("\t")
            if (c, r) == (client, run):
                self.cpu[host] = float(seconds)

    def hosts(self, role):
        return sorted((h for h, r in self.role.items() if r == role), key=lambda h: (len(h), h))

    def last_copy(self):
        return max(self.complete[h] for h in self.hosts("downloader"))

    def first_copy(self):
        return min(self.complete[h] for h in self.hosts("downloader"))

    def received(self, host):
        """(payload, frame bytes) the host received over the case."""
        _, _, rx_b, rx_p, _, _ = self.samples[host][-1]
        return rx_b - HEADER_BYTES * rx_p, rx_b

    def sent_at(self, host, t):
        """(frame bytes, payload) the host had sent by time t: linear between the samples, from
        nothing at t = 0 (the counters' base)."""
        points = [(0.0, 0, 0)] + [(s[0], s[4], s[5]) for s in self.samples[host]]
        for (ta, ba, pa), (tb, bb, pb) in zip(points, points[1:]):
            if ta <= t <= tb and tb > ta:
                x = (t - ta) / (tb - ta)
                frames, packets = ba + x * (bb - ba), pa + x * (pb - pa)
                return frames, frames - HEADER_BYTES * packets
        _, frames, packets = points[-1] if t > points[-1][0] else points[0]
        return frames, frames - HEADER_BYTES * packets

    def upload_utilisation(self, host, limit_mbit, until):
        """[(t_end, utilisation)] per sample interval up to `until`."""
        out = []
        s = self.samples[host]
        for a, b in zip(s, s[1:]):
            if a[0] >= until:
                break
            dt = b[0] - a[0]
            if dt > 0:
                out.append((b[0], (b[4] - a[4]) * 8 / (rate(limit_mbit) * dt)))
        return out


def fmt_range(values, digits=2):
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}" if round(lo, digits) == round(hi, digits) else f"{lo:.{digits}f}-{hi:.{digits}f}"


def print_case(d, client, run):
    p = read_params(d)
    case = Case(d, client, run)
    t_min, t_without = bounds(p)
    size = p["SIZE_BYTES"]
    first, last = case.first_copy(), case.last_copy()
    print(f"== {client}, run {run}")
    bound = f"T_min {t_min:.2f} s"
    if p["RELAYS"] > 0:
        bound += f" (with the relays' own copies; without relays {t_without:.2f} s)"
    print(f"first copy {first:.2f} s, last copy {last:.2f} s (spread {last - first:.2f} s); {bound}; "
          f"efficiency {t_min / last:.3f}")
    dls = case.hosts("downloader")
    payload = [case.received(h)[0] / size for h in dls]
    frames = [case.received(h)[1] / size for h in dls]
    print(f"received / F per downloader: payload {' '.join(f'{x:.3f}' for x in payload)} "
          f"(mean {sum(payload) / len(payload):.3f}); frames {fmt_range(frames, 3)}")
    seeder = case.hosts("seeder")[0]
    if p["SEEDER_UP"] > 0:
        one_copy = next((s[0] for s in case.samples[seeder] if s[4] - HEADER_BYTES * s[5] >= size), last)
        util_copy = case.upload_utilisation(seeder, p["SEEDER_UP"], one_copy)
        util_last = case.upload_utilisation(seeder, p["SEEDER_UP"], last)
        sent_copy, _ = case.sent_at(seeder, one_copy)
        sent_last, _ = case.sent_at(seeder, last)
        busy = sum(u >= BUSY for _, u in util_copy) / max(len(util_copy), 1)
        print(f"seeder upload: {sent_copy * 8 / (rate(p['SEEDER_UP']) * one_copy):.0%} busy until it had "
              f"sent F of payload (at {one_copy:.1f} s; {busy:.0%} of the 0.5 s samples at >= {BUSY:.0%}), "
              f"{sent_last * 8 / (rate(p['SEEDER_UP']) * last):.0%} until the last copy")
        bucket = max(0.5, math.ceil(last / 24 / 0.5) * 0.5)
        timeline = []
        for i in range(math.ceil(last / bucket)):
            a, b = case.sent_at(seeder, i * bucket), case.sent_at(seeder, min((i + 1) * bucket, last))
            span = min((i + 1) * bucket, last) - i * bucket
            if span > 0:
                timeline.append(f"{(b[0] - a[0]) * 8 / (rate(p['SEEDER_UP']) * span):.0%}")
        print(f"seeder upload per {bucket:g} s: {' '.join(timeline)}")
    else:
        print("seeder upload: unlimited, no utilisation")
    relays = case.hosts("relay")
    if relays:
        parts = []
        for h in relays:
            full = next((s[0] for s in case.samples[h] if s[1] is not None and s[1] >= 1), None)
            sent, _ = case.sent_at(h, last)
            util = f"{sent * 8 / (rate(p['RELAY_UP']) * last):.0%}" if p["RELAY_UP"] > 0 else "unlimited"
            parts.append(f"{h} full copy {'at %.1f s' % full if full is not None else 'never'}, upload {util} "
                         f"until the last copy")
        print("relays: " + "; ".join(parts))
    late = case.hosts("late")
    if late:
        delay = p["LATE_DELAY"]
        parts = []
        for h in late:
            piece = next((s[0] for s in case.samples[h] if s[1] is not None and s[1] > 0 and s[0] >= delay), None)
            first_piece = f"+{piece - delay:.1f} s" if piece is not None else "never"
            parts.append(f"{h} first piece {first_piece}, complete +{case.complete[h] - delay:.1f} s")
        print(f"late joiners (start at {delay:g} s): " + "; ".join(parts))
    cpu = case.cpu
    dl_cpu = [cpu[h] for h in dls]
    line = (f"CPU s: tracker host {cpu['tr']:.2f}, seeder {cpu[seeder]:.2f}, downloaders {fmt_range(dl_cpu)} "
            f"(sum {sum(dl_cpu):.2f})")
    if relays:
        line += f", relays {fmt_range([cpu[h] for h in relays])}"
    if late:
        line += f", late joiners {fmt_range([cpu[h] for h in late])}"
    print(line + f"; all hosts {sum(cpu.values()) / last:.2f} cores busy on average")
    print(f"copies compared with the source byte for byte: {case.verified} identical")


def print_summary(d):
    p = read_params(d)
    t_min, _ = bounds(p)
    runs = defaultdict(list)
    for line in open(f"{d}/events.tsv"):
        fields = line.rstrip("\n").split("\t")
        if fields[2] == "verified":
            runs[fields[0]].append(Case(d, fields[0], fields[1]))
    print(f"# Summary: T_min {t_min:.2f} s; per client over its runs (efficiency = T_min / last copy)")
    print(f"{'client':<10} {'runs':>4} {'last copy s':>13} {'efficiency':>11} {'spread s':>9} "
          f"{'payload/F':>10} {'worst':>6} {'CPU s':>7}")
    row = []
    for client in p["CLIENTS"]:
        cases = runs.get(client)
        if not cases:
            row.append("–")
            continue
        lasts = [c.last_copy() for c in cases]
        spreads = [c.last_copy() - c.first_copy() for c in cases]
        payload = [c.received(h)[0] / p["SIZE_BYTES"] for c in cases for h in c.hosts("downloader")]
        cpu = sum(sum(c.cpu.values()) for c in cases) / len(cases)
        eff = t_min / (sum(lasts) / len(lasts))
        print(f"{client:<10} {len(cases):>4} {fmt_range(lasts, 1):>13} {eff:>11.3f} {fmt_range(spreads, 1):>9} "
              f"{sum(payload) / len(payload):>10.3f} {max(payload):>6.3f} {cpu:>7.1f}")
        row.append(f"{fmt_range(lasts, 1).replace('-', '–')} ({eff:.2f})")
    print()
    print(f"# as a row of issue 18's table (clients {', '.join(p['CLIENTS'])}):")
    print(f"| {describe(p)} | {t_min:.1f} | " + " | ".join(row) + " |")


def describe(p):
    """The case in the words of issue 18's table."""
    n, mib = int(p["DOWNLOADERS"]), p["SIZE_BYTES"] / 2**20
    text = f"1 seeder {p['SEEDER_UP']:g} Mbit/s up, {n} downloaders {p['DOWNLOADER_UP']:g} up, {mib:g} MiB"
    if p["DOWNLOADER_DOWN"] > 0:
        text += f", {p['DOWNLOADER_DOWN']:g} down"
    if p["RELAYS"] > 0:
        text += f", {int(p['RELAYS'])} relays {p['RELAY_UP']:g} up"
    if p["LATE"] > 0:
        text += f", {int(p['LATE'])} late joiners after {p['LATE_DELAY']:g} s"
    return text


def main():
    if sys.argv[1] == "--case":
        print_case(sys.argv[4], sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "--summary":
        print_summary(sys.argv[2])
    elif sys.argv[1] == "--t-min":
        print(f"{bounds(read_params(sys.argv[2]))[0]:.3f}")
    elif sys.argv[1] == "--title":
        print(describe(read_params(sys.argv[2])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
