#!/usr/bin/env python3
"""What one scrape of /metrics costs the server, with N live listeners
playing: the server's CPU over quiet windows and over windows in which this
script scrapes as fast as it can, one request after another.

    benches/scrape_cost.py [--sessions 3000] [--window 8] [--rounds 3]

Same setup as benches/ladder.py --live (its functions are reused): the
server pinned to core 0, the tester and this script to core 1, sessions from
127.0.0.2-127.0.0.251. The CPU a scrape costs is (CPU in scraping windows -
CPU in quiet windows) / scrapes; the A/B of docs/PERFORMANCE.md (scrape
every second or not at all) is that figure times one per second, measured
directly instead of as the difference of two noisy runs.

Needs what benches/ladder.py needs (RTSPD_BIN names the binary).
"""

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ladder  # noqa: E402


def scrape_for(url, seconds):
    """Scrapes back to back for `seconds`; returns (count, slowest ms)."""
    end, n, slowest = time.monotonic() + seconds, 0, 0.0
    while time.monotonic() < end:
        t0 = time.monotonic()
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
        slowest = max(slowest, (time.monotonic() - t0) * 1000)
        n += 1
    return n, slowest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=3000)
    ap.add_argument("--window", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ramp", type=float, default=600)
    a = ap.parse_args()
    os.sched_setaffinity(0, {1})
    ladder.LIVE.append(True)
    ladder.LOAD_ARGS.extend(["--source-ips", "127.0.0.2-127.0.0.251"])
    media = tempfile.mkdtemp()
    clip = os.path.join(media, "clip.wav")
    duration = a.sessions / a.ramp + 2 * a.rounds * a.window + 10
    ladder.subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                           f"sine=f=440:r=8000:d={duration + 30}", "-ac", "1", "-c:a",
                           "pcm_s16le", "-y", clip], check=True)
    port = 21554
    server, url = ladder.start_server("rtspd", media, clip, port, port + 2)
    metrics = f"http://127.0.0.1:{ladder.http_port(port)}/metrics"
    try:
        ladder.load(url, 1, 1, 10)
        result = {}
        runner = threading.Thread(target=lambda: result.update(
            zip(("json", "cmd"), ladder.load(url, a.sessions, duration, a.ramp))))
        runner.start()
        time.sleep(a.sessions / a.ramp + 3)
        quiet, busy, scrapes, slowest = [], [], 0, 0.0
        for _ in range(a.rounds):
            c0, t0 = ladder.cpu_seconds(server.pid), time.monotonic()
            time.sleep(a.window)
            quiet.append((ladder.cpu_seconds(server.pid) - c0) / (time.monotonic() - t0))
            c0, t0 = ladder.cpu_seconds(server.pid), time.monotonic()
            n, worst = scrape_for(metrics, a.window)
            busy.append((ladder.cpu_seconds(server.pid) - c0) / (time.monotonic() - t0))
            scrapes, slowest = scrapes + n, max(slowest, worst)
        size = len(urllib.request.urlopen(metrics, timeout=5).read())
        runner.join()
    finally:
        server.terminate()
        server.wait(timeout=10)
    j = result["json"]
    q, b = sum(quiet) / len(quiet), sum(busy) / len(busy)
    rate = scrapes / (a.rounds * a.window)
    per_scrape_ms = (b - q) / rate * 1000
    print(f"sessions ok {j['sessions_ok']}/{a.sessions}, loss {j['loss_pct']:.3f} %, "
          f"jitter p99 {j['jitter_p99_ms']:.2f} ms, pacing p99 {j['pacing_p99_ms']:.2f} ms")
    print("quiet windows CPU %: " + ", ".join(f"{100 * x:.1f}" for x in quiet))
    print("scraping windows CPU %: " + ", ".join(f"{100 * x:.1f}" for x in busy))
    print(f"scrapes: {scrapes} ({rate:.0f}/s), {size} bytes each, slowest {slowest:.1f} ms")
    print(f"server CPU per scrape: {per_scrape_ms:.3f} ms; at one scrape a second: "
          f"{per_scrape_ms / 10:.3f} % of a core")
    print("tester: " + result["cmd"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
