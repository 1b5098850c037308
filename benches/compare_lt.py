#!/usr/bin/python3
"""A minimal libtorrent (python3-libtorrent, Debian) seeder or downloader for the benchmarks.

    compare_lt.py seed|download TORRENT DIR PORT plain|rc4 [--listen ADDR] [--keep-seeding]
                                                           [--progress FILE]

`seed` checks DIR's copy, prints "seeding" on stdout once it serves every piece, and runs until
killed. `download` fetches into DIR and exits 0 as soon as every piece is verified and written
(benches/compare.sh); with --keep-seeding it prints "complete" instead and seeds until killed
(benches/swarm.sh). `rc4` forces MSE/PE stream encryption (RC4) both ways, `plain` disables it.
--listen is the address to listen on (default 127.0.0.1, where every peer of compare.sh is).
--progress FILE: every 0.25 s, FILE is replaced by one line "<unix time> <fraction> <bytes>" with
the verified bytes of the wanted pieces (what benches/swarm_sample.py reads for the progress
curves).
"""
import argparse
import os
import sys
import time

import libtorrent as lt


def write_progress(path, status, total):
    done = status.total_wanted_done
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{time.time():.3f} {done / total if total else 1:.6f} {done}\n")
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["seed", "download"])
    parser.add_argument("torrent")
    parser.add_argument("save")
    parser.add_argument("port", type=int)
    parser.add_argument("enc", choices=["plain", "rc4"])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--keep-seeding", action="store_true")
    parser.add_argument("--progress")
    args = parser.parse_args()
    policy = lt.enc_policy.forced if args.enc == "rc4" else lt.enc_policy.disabled
    settings = {
        "listen_interfaces": f"{args.listen}:{args.port}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # Every peer of compare.sh is on 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        "out_enc_policy": int(policy),
        "in_enc_policy": int(policy),
        "allowed_enc_level": int(lt.enc_level.rc4),
        "prefer_rc4": args.enc == "rc4",
        # TCP only, like the other clients (libtorrent prefers uTP, which is far slower on
        # loopback and would measure uTP rather than the client).
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": 0,
    }
    ses = lt.session(settings)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(args.torrent)
    atp.save_path = args.save
    handle = ses.add_torrent(atp)
    total = atp.ti.total_size()
    if args.mode == "seed":
        while not handle.status().is_seeding:
            time.sleep(0.05)
        print("seeding", flush=True)
        while True:
            time.sleep(3600)
    next_progress = 0.0
    while True:
        st = handle.status()
        if args.progress and time.time() >= next_progress:
            write_progress(args.progress, st, total)
            next_progress = time.time() + 0.25
        if st.is_seeding:
            break
        if st.errc.value() != 0:
            print(f"libtorrent error: {st.errc.message()}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.02)
    # Make sure the last pieces are on disk before the copy is compared.
    try:
        handle.flush_cache()
    except AttributeError:
        pass
    if not args.keep_seeding:
        ses.pause()
        return
    if args.progress:
        write_progress(args.progress, handle.status(), total)
    print("complete", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
