#!/usr/bin/env python3
"""Writes fuzz/corpus/cni_grpc/: what an agent's socket sends back for one unary call, as HTTP/2 frames (RFC 9113
§4.1; headers as HPACK literals without Huffman, RFC 7541 §6.2.2). The first byte of each seed is fuzz_cni_grpc's
chunk size."""
import os
import struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "cni_grpc")
os.makedirs(out, exist_ok=True)


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0, 1, 3, 4, 7
END_STREAM, END_HEADERS = 1, 4
preface = frame(SETTINGS, 0, 0, b"") + frame(SETTINGS, 1, 0, b"")
headers = b"\x88" + literal("content-type", "application/grpc")  # :status 200 from the static table
message = b"\x0a\x04eth0"
seeds = {
    "ok-headers-data-trailers": b"\x07" + preface + frame(HEADERS, END_HEADERS, 1, headers)
    + frame(DATA, 0, 1, b"\x00" + struct.pack(">I", len(message)) + message)
    + frame(HEADERS, END_HEADERS | END_STREAM, 1, literal("grpc-status", "0")),
    "trailers-only-already-exists": b"\x3f" + preface + frame(
        HEADERS, END_HEADERS | END_STREAM, 1,
        headers + literal("grpc-status", "6") + literal("grpc-message", "10.0.0.7 is taken%3A 100%25")),
    "http-503-without-grpc-status": b"\x00" + frame(SETTINGS, 0, 0, b"")
    + frame(HEADERS, END_HEADERS | END_STREAM, 1, literal(":status", "503")),
    "rst-refused-stream": b"\x01" + preface + frame(RST_STREAM, 0, 1, struct.pack(">I", 7)),
    "goaway-before-stream": b"\x10" + frame(SETTINGS, 0, 0, b"") + frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
