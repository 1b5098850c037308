#!/usr/bin/env python3
"""Writes aes-256-ctr.json: vectors of ivcsd's aes-256-ctr content suite (docs/protocol.md 6.4),
made with Python's hashlib and the openssl command line, independently of ivcsd's code.

The content key and the plaintext rule are those of blocks.json (CIPHER.md 6.2), so the two
suites are tested on the same content. Run from anywhere: python3 aes-256-ctr.py
"""
import hashlib
import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
blocks = json.load(open(os.path.join(HERE, "blocks.json")))
content_key = bytes.fromhex(blocks["content_key"])
aes_key = hashlib.sha256(b"ivcsd/aes-256-ctr/v1" + content_key).digest()


def keystream_xor(data: bytes, offset: int) -> bytes:
    """openssl's AES-256-CTR of `data` as content bytes starting at `offset`: the initial
    counter block is offset // 16, and the first offset % 16 keystream bytes are dropped."""
    skip = offset % 16
    iv = (offset // 16).to_bytes(16, "big").hex()
    out = subprocess.run(
        ["openssl", "enc", "-aes-256-ctr", "-nosalt", "-K", aes_key.hex(), "-iv", iv],
        input=bytes(skip) + data,
        capture_output=True,
        check=True,
    ).stdout
    return out[skip:]


# openssl's AES-256-CTR is the one of NIST SP 800-38A, F.5.5 (first block).
nist = subprocess.run(
    ["openssl", "enc", "-aes-256-ctr", "-nosalt",
     "-K", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "-iv", "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"],
    input=bytes.fromhex("6bc1bee22e409f96e93d7e117393172a"), capture_output=True, check=True,
).stdout
assert nist.hex() == "601ec313775789a5b7a7f504bbf3d228", nist.hex()


def plaintext(length: int) -> bytes:
    out = b""
    n = 0
    while len(out) < length:
        out += hashlib.sha256(f"ivcsd plaintext shared/{n}".encode()).digest()
        n += 1
    return out[:length]


c = blocks["content"]
length, piece_length = c["length"], c["piece_length"]
data = plaintext(length)
assert hashlib.sha256(data).hexdigest() == c["plaintext_sha256"]
cipher = keystream_xor(data, 0)
ranges = []
for offset, n in [(0, 48), (5, 40), (16383, 34), (16384 * 7 + 9, 100), ((1 << 40) + 3, 64),
                  # across the carry out of the low 32 bits of the counter
                  ((1 << 36) - 20, 48),
                  ((1 << 63) + 16 * 1000 - 7, 32)]:
    ranges.append({"offset": offset, "len": n, "keystream": keystream_xor(bytes(n), offset).hex()})

out = {
    "description": "ivcsd aes-256-ctr content suite (docs/protocol.md 6.4): AES-256-CTR under "
    "SHA-256('ivcsd/aes-256-ctr/v1' || K), 128-bit big-endian counter from 0 at content offset 0. "
    "Made by aes-256-ctr.py with hashlib and openssl enc; K and the content are blocks.json's.",
    "content_key": blocks["content_key"],
    "aes_key": aes_key.hex(),
    "ranges": ranges,
    "content": {
        "length": length,
        "piece_length": piece_length,
        "ciphertext_sha256": hashlib.sha256(cipher).hexdigest(),
        "ciphertext_first64": cipher[:64].hex(),
        "pieces_sha1": [hashlib.sha1(cipher[i:i + piece_length]).hexdigest()
                        for i in range(0, length, piece_length)],
    },
}
with open(os.path.join(HERE, "aes-256-ctr.json"), "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
