#!/usr/bin/env python3
"""Trickle request heads into an RTSP server one byte per TCP segment and
report the server's CPU time per byte received (issue 10, defect 2).

Every connection sends a valid `OPTIONS * RTSP/1.0` whose head is exactly
`--head` bytes (padding header lines of at most 2,000 bytes, under the
default 2,112-byte header line cap), one byte per `send` with TCP_NODELAY and
`--gap-ms` between rounds, waits for the answer, and starts the next head on
the same connection, for `--duration` seconds or `--heads` whole heads
per connection. All connections advance in lockstep from one thread, so
the byte rate is the same for every server measured.

The server's CPU is utime + stime from /proc/PID/stat (every thread), read
once all connections are open and again at the end.

    taskset -c 0 target/release/rtspd --bind 127.0.0.1 --port 18554 --rtp-port 0 &
    taskset -c 1 python3 benches/trickle.py --port 18554 --pid $! --head 8192 --conns 4 --heads 2
"""

import argparse
import json
import os
import socket
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: fields start after the last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def head(size, cseq):
    """A valid OPTIONS head of exactly `size` bytes."""
    start = f"OPTIONS * RTSP/1.0\r\nCSeq: {cseq}\r\n".encode()
    end = b"\r\n"
    room = size - len(start) - len(end)
    lines = []
    i = 0
    while room > 0:
        prefix = f"X-Pad-{i}: ".encode()
        overhead = len(prefix) + 2
        if room < overhead + 1:
            # Too little left for one more line: widen the previous one.
            if not lines:
                raise SystemExit(f"--head {size} is too small")
            lines[-1] = lines[-1][:-2] + b"p" * room + b"\r\n"
            break
        n = min(2000 - len(prefix), room - overhead)
        lines.append(prefix + b"p" * n + b"\r\n")
        room -= overhead + n
        i += 1
    out = start + b"".join(lines) + end
    assert len(out) == size, (len(out), size)
    return out


class Conn:
    def __init__(self, addr, size):
        self.sock = socket.create_connection(addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.size = size
        self.cseq = 0
        self.next_head()

    def next_head(self):
        self.cseq += 1
        self.req = head(self.size, self.cseq)
        self.at = 0

    def await_response(self, timeout):
        """Reads one response head; returns its status code."""
        self.sock.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {data[:60]!r}")
            data += chunk
        self.sock.settimeout(None)
        return int(data.split(b" ", 2)[1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True, help="server process to measure")
    p.add_argument("--head", type=int, default=8192, help="head size in bytes")
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--gap-ms", type=float, default=0.5, help="sleep between rounds of bytes")
    p.add_argument("--duration", type=float, default=8.0, help="seconds to trickle")
    p.add_argument(
        "--heads",
        type=int,
        default=0,
        help="instead of --duration: send this many whole heads on every connection",
    )
    a = p.parse_args()

    conns = [Conn((a.host, a.port), a.head) for _ in range(a.conns)]
    time.sleep(0.2)
    cpu0, t0 = cpu_seconds(a.pid), time.monotonic()
    sent = heads = bad = 0
    end = t0 + a.duration

    def running():
        if a.heads:
            return any(c.cseq <= a.heads for c in conns)
        return time.monotonic() < end

    while running():
        for c in conns:
            if a.heads and c.cseq > a.heads:
                continue
            c.sock.send(c.req[c.at : c.at + 1])
            c.at += 1
            sent += 1
            if c.at == len(c.req):
                status = c.await_response(5.0)
                heads += 1
                bad += status != 200
                c.next_head()
        time.sleep(a.gap_ms / 1000)
    cpu1, t1 = cpu_seconds(a.pid), time.monotonic()
    for c in conns:
        c.sock.close()

    cpu = cpu1 - cpu0
    wall = t1 - t0
    result = {
        "head": a.head,
        "conns": a.conns,
        "wall_s": round(wall, 2),
        "bytes": sent,
        "heads": heads,
        "non_200": bad,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_share": round(cpu / wall, 3),
        "us_per_byte": round(cpu / sent * 1e6, 2) if sent else None,
    }
    print(
        f"{a.conns} conns, {a.head}-byte heads: {sent} bytes in {wall:.1f} s "
        f"({heads} heads, {bad} not 200); server CPU {cpu:.2f} s "
        f"= {cpu / sent * 1e6:.2f} us/byte",
        file=sys.stderr,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
