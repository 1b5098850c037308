#!/usr/bin/python3
"""A minimal libtorrent (python3-libtorrent, Debian) seeder or downloader for benches/compare.sh.

    compare_lt.py seed|download TORRENT DIR PORT plain|rc4

`seed` checks DIR's copy, prints "seeding" on stdout once it serves every piece, and runs until
killed. `download` fetches into DIR and exits 0 as soon as every piece is verified and written.
`rc4` forces MSE/PE stream encryption (RC4) both ways, `plain` disables it.
"""
import sys
import time

import libtorrent as lt


def main():
    mode, torrent, save, port, enc = sys.argv[1:6]
    policy = lt.enc_policy.forced if enc == "rc4" else lt.enc_policy.disabled
    settings = {
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # Every peer of the benchmark is on 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        "out_enc_policy": int(policy),
        "in_enc_policy": int(policy),
        "allowed_enc_level": int(lt.enc_level.rc4),
        "prefer_rc4": enc == "rc4",
        # TCP only, like the other clients (libtorrent prefers uTP, which is far slower on
        # loopback and would measure uTP rather than the client).
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": 0,
    }
    ses = lt.session(settings)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save
    handle = ses.add_torrent(atp)
    if mode == "seed":
        while not handle.status().is_seeding:
            time.sleep(0.05)
        print("seeding", flush=True)
        while True:
            time.sleep(3600)
    else:
        while True:
            st = handle.status()
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
        ses.pause()


if __name__ == "__main__":
    main()
