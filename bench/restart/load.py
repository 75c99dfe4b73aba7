#!/usr/bin/env python3
"""Steady new-connection load for bench/restart.

server PORT STOPFILE: answers every connection on PORT with a greeting and closes it, until STOPFILE exists.
client IP PORT INTERVAL_MS STOPFILE: opens a connection every INTERVAL_MS until STOPFILE exists (at most 100,000),
each a connect and the greeting, both within 3 s (one SYN retransmission fits); prints one JSON object:
attempted, failed, retransmitted (completed only after the kernel sent something again, from TCP_INFO) and the
errors seen.
"""
import json, os, select, socket, struct, sys, time

TIMEOUT = 3.0
TCPI_TOTAL_RETRANS = 100  # offset of tcpi_total_retrans in struct tcp_info (linux/tcp.h)


def server(port, stopfile):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(512)
    while not os.path.exists(stopfile):
        if select.select([s], [], [], 0.1)[0]:
            c, _ = s.accept()
            c.sendall(b"hello")
            c.close()


def once(ip, port):
    """Returns (error or None, retransmitted)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    err = None
    try:
        s.connect((ip, port))
        if not s.recv(16):
            err = "closed without a greeting"
    except OSError as e:
        err = type(e).__name__ if e.errno is None else os.strerror(e.errno)
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    retrans = len(info) >= 104 and struct.unpack_from("I", info, TCPI_TOTAL_RETRANS)[0] > 0
    s.close()
    return err, retrans


def client(ip, port, interval_ms, stopfile):
    attempted = failed = retransmitted = 0
    errors = {}
    while attempted < 100000 and not os.path.exists(stopfile):
        err, retrans = once(ip, port)
        attempted += 1
        if err:
            failed += 1
            errors[err] = errors.get(err, 0) + 1
        elif retrans:
            retransmitted += 1
        time.sleep(interval_ms / 1000)
    print(json.dumps({"attempted": attempted, "failed": failed, "retransmitted": retransmitted, "errors": errors}))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]), sys.argv[3])
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
