#!/usr/bin/env python3
"""Independent check of tests/data/frames_v1.json, written from SPEC.md alone
with the Python `cryptography` package (no Rust involved)."""
import json
import pathlib
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = pathlib.Path(__file__).resolve().parents[2]
VERSION, RECORD, SEALED = 0x01, 0x01, 0x02
COUNTER, RANDOM = 0x01, 0x02


def header(ftype, strategy, key_id, nonce_field, ts, length):
    return (bytes([VERSION, ftype, strategy, 0]) + key_id + nonce_field
            + ts.to_bytes(8, "big") + length.to_bytes(4, "big"))


def parse(frame):
    """Strict parse per SPEC.md section 2; returns (fields, error name)."""
    if len(frame) < 36:
        return None, "Truncated"
    ver, ftype, strategy, reserved = frame[0], frame[1], frame[2], frame[3]
    if ver != VERSION:
        return None, f"UnsupportedVersion({ver})"
    if ftype not in (RECORD, SEALED):
        return None, f"UnknownFrameType({ftype})"
    if reserved != 0 or strategy != {RECORD: COUNTER, SEALED: RANDOM}[ftype]:
        return None, "Malformed"
    if ftype == RECORD and frame[12:16] != b"\0\0\0\0":
        return None, "Malformed"
    length = int.from_bytes(frame[32:36], "big")
    if length > 1 << 24:
        return None, "PayloadTooLarge"
    want = 36 + length + 16
    if len(frame) < want:
        return None, "Truncated"
    if len(frame) > want:
        return None, "TrailingBytes"
    return dict(ftype=ftype, key_id=frame[4:12], nonce=frame[12:24],
                ts=int.from_bytes(frame[24:32], "big"), length=length), None


def counter_nonce(iv, seq):
    return bytes(a ^ b for a, b in zip(iv, b"\0" * 4 + seq.to_bytes(8, "big")))


def main():
    v = json.loads((ROOT / "tests/data/frames_v1.json").read_text())
    n = 0
    for r in v["record"]:
        key, iv = bytes.fromhex(r["key"]), bytes.fromhex(r["iv"])
        seq, payload = r["seq"], bytes.fromhex(r["payload"])
        nonce = counter_nonce(iv, seq)
        assert nonce.hex() == r["nonce"], r["name"]
        hdr = header(RECORD, COUNTER, bytes.fromhex(r["session_id"]), b"\0" * 4 + seq.to_bytes(8, "big"),
                     r["timestamp_ms"], len(payload))
        frame = hdr + AESGCM(key).encrypt(nonce, payload, hdr)
        assert frame.hex() == r["frame"], r["name"]
        fields, err = parse(frame)
        assert err is None and fields["ts"] == r["timestamp_ms"]
        assert AESGCM(key).decrypt(nonce, frame[36:], frame[:36]) == payload
        n += 1
    for r in v["sealed"]:
        key, nonce, payload = bytes.fromhex(r["key"]), bytes.fromhex(r["nonce"]), bytes.fromhex(r["payload"])
        hdr = header(SEALED, RANDOM, bytes.fromhex(r["key_id"]), nonce, r["timestamp_ms"], len(payload))
        frame = hdr + AESGCM(key).encrypt(nonce, payload, hdr)
        assert frame.hex() == r["frame"], r["name"]
        n += 1
    first = v["record"][0]
    key, iv, sid = bytes.fromhex(first["key"]), bytes.fromhex(first["iv"]), bytes.fromhex(first["session_id"])
    for case in v["invalid"]:
        frame = bytes.fromhex(case["frame"])
        fields, err = parse(frame)
        if err is None:
            if fields["ftype"] != RECORD:
                err = "UnexpectedFrame"
            elif fields["key_id"] != sid:
                err = "UnknownKey"
            else:
                seq = int.from_bytes(fields["nonce"][4:], "big")
                try:
                    AESGCM(key).decrypt(counter_nonce(iv, seq), frame[36:], frame[:36])
                    err = None
                except Exception:
                    err = "Authentication"
        assert err == case["error"], (case["name"], err, case["error"])
        n += 1
    print(f"python interop: {n} vectors checked, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
