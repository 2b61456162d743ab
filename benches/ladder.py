#!/usr/bin/env python3
"""The load ladder of docs/PERFORMANCE.md: rtspd and gst-rtsp-server serving
the same 8 kHz mono clip, measured by `rtspd load` in one run.

    benches/ladder.py [--sizes 100,500,1000,2000,4000] [--duration 20]
                      [--ramp 200] [--servers rtspd,gst,gst-shared] [--out FILE.md]
                      [--live] [--rtspd-args "..."] [--load-args "..."]
                      [--scrape-metrics SECONDS]

Each server runs pinned to core 0 (taskset), the tester to core 1. For each
size it starts a fresh server, warms it with one session (so the clip is
loaded), reads the server's CPU time and RSS, runs the load, samples the
RSS once every session is playing, and reads the CPU time again. Output: one
Markdown table row per run (and the raw JSON lines in FILE.md.jsonl).

rtspd runs with its HTTP side on the RTSP port + 3; with --scrape-metrics S
a thread of this script GETs its /metrics every S seconds during the run
(the scrape's cost is the server's: compare against the same run without).

Needs a release build (`cargo build --release`; RTSPD_BIN names another
binary, e.g. under a CARGO_TARGET_DIR), ffmpeg (to make the clip),
taskset, and for the gst rows benches/gst_rtsp_server.py's packages.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTSPD = os.environ.get("RTSPD_BIN", os.path.join(ROOT, "target", "release", "rtspd"))
GST = os.path.join(ROOT, "benches", "gst_rtsp_server.py")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    return int(m.group(1)) if m else 0


RTSPD_ARGS = []
LOAD_ARGS = []
# --live: rtspd serves the clip as a PCMU live channel, gst as shared PCMU.
LIVE = []
# --scrape-metrics: seconds between scrapes of rtspd's /metrics.
SCRAPE = []


def http_port(port):
    return port + 3


def scraper(url, every, stop, stats):
    """GETs url every `every` s until `stop` is set; counts scrapes, bytes
    and the slowest answer."""
    import urllib.request
    while not stop.wait(every):
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                n = len(r.read())
        except OSError:
            stats["failed"] = stats.get("failed", 0) + 1
            continue
        dt = time.monotonic() - t0
        stats["scrapes"] = stats.get("scrapes", 0) + 1
        stats["bytes"] = n
        stats["max_ms"] = max(stats.get("max_ms", 0), dt * 1000)


def start_server(kind, media, clip, port, rtp_port):
    if kind == "rtspd":
        cmd = [RTSPD, "--bind", "127.0.0.1", "--port", str(port), "--rtp-port", str(rtp_port),
               "--media", media, "--max-sessions-per-ip", "20000",
               "--max-connections-per-ip", "20000",
               "--http", f"127.0.0.1:{http_port(port)}"] + RTSPD_ARGS
        url = f"rtsp://127.0.0.1:{port}/clip.wav"
        if LIVE:
            cmd += ["--live", f"ch=file:{clip},codec=pcmu"]
            url = f"rtsp://127.0.0.1:{port}/live/ch"
    else:
        cmd = ["/usr/bin/python3", GST, clip, str(port)] + (["--shared"] if kind == "gst-shared" else [])
        cmd += ["--pcmu"] if LIVE else []
        url = f"rtsp://127.0.0.1:{port}/clip"
    p = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    p.stdout.readline()  # the first line says it is listening
    threading.Thread(target=p.stdout.read, daemon=True).start()
    return p, url


def load(url, n, duration, ramp):
    cmd = ["taskset", "-c", "1", RTSPD, "load", url, "-n", str(n), "-d", str(duration),
           "--ramp", str(ramp)] + LOAD_ARGS
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=n / ramp + duration + 120)
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]), " ".join(cmd)


def one(kind, n, duration, ramp, media, clip, port):
    server, url = start_server(kind, media, clip, port, port + 2)
    try:
        load(url, 1, 1, 10)  # warm-up: the clip is read, pipelines built
        time.sleep(0.5)
        rss0 = rss_kib(server.pid)
        result = {}
        runner = threading.Thread(target=lambda: result.update(zip(("json", "cmd"), load(url, n, duration, ramp))))
        runner.start()
        stop, scraped = threading.Event(), {}
        if SCRAPE and kind == "rtspd":
            url = f"http://127.0.0.1:{http_port(port)}/metrics"
            threading.Thread(target=scraper, args=(url, SCRAPE[0], stop, scraped), daemon=True).start()
        # CPU is charged over the steady state only: from 2 s after the last
        # session started to 2 s before the first one ends.
        time.sleep(n / ramp + 2)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(max(duration - 4 - n / ramp, 1))
        cpu = cpu_seconds(server.pid) - cpu0
        wall = time.monotonic() - t0
        rss_mid = rss_kib(server.pid)
        stop.set()
        runner.join()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    j = result["json"]
    return {
        "server": kind, "n": n, "json": j, "cmd": result["cmd"],
        "server_cpu_pct": 100 * cpu / wall,
        "rss_mib": rss_mid / 1024,
        "rss_per_session_kib": (rss_mid - rss0) / max(n - 1, 1),
        "scraped": scraped,
    }


def row(r):
    j = r["json"]
    return ("| {server} | {n} | {ok}/{n} | {loss:.3f} | {jit:.2f} | {pace:.2f} | {setup:.1f} | "
            "{pps:.0f} | {cpu:.1f} | {cpu100:.2f} | {rss:.1f} | {rssper:.1f} | {tcpu:.0f} |").format(
        server=r["server"], n=r["n"], ok=j["sessions_ok"], loss=j["loss_pct"],
        jit=j["jitter_p99_ms"], pace=j["pacing_p99_ms"], setup=j["setup_p99_ms"],
        pps=j["pkts_per_s"], cpu=r["server_cpu_pct"],
        cpu100=100 * r["server_cpu_pct"] / r["n"], rss=r["rss_mib"],
        rssper=r["rss_per_session_kib"], tcpu=j["tester_cpu_pct"])


HEADER = ("| server | sessions | ok | loss % | jitter p99 ms | pacing p99 ms | setup p99 ms | "
          "pkts/s | server CPU % | CPU % per 100 | RSS MiB | RSS KiB/session | tester CPU % |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,500,1000,2000,4000")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--ramp", type=float, default=200)
    ap.add_argument("--servers", default="rtspd,gst")
    ap.add_argument("--out")
    ap.add_argument("--rtspd-args", default="", help="extra rtspd flags, space-separated")
    ap.add_argument("--load-args", default="",
                    help="extra `rtspd load` flags, space-separated (e.g. --source-ips 127.0.0.2-127.0.0.251)")
    ap.add_argument("--scrape-metrics", type=float, metavar="SECONDS",
                    help="scrape rtspd's /metrics this often during each run")
    ap.add_argument("--live", action="store_true",
                    help="one shared PCMU timeline: rtspd --live against gst shared media")
    a = ap.parse_args()
    RTSPD_ARGS.extend(a.rtspd_args.split())
    LOAD_ARGS.extend(a.load_args.split())
    if a.live:
        LIVE.append(True)
    if a.scrape_metrics:
        SCRAPE.append(a.scrape_metrics)
    media = tempfile.mkdtemp()
    clip = os.path.join(media, "clip.wav")
    sizes = [int(s) for s in a.sizes.split(",")]
    secs = max(sizes) / a.ramp + a.duration + 30
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    f"sine=f=440:r=8000:d={secs}", "-ac", "1", "-c:a", "pcm_s16le", "-y", clip],
                   check=True)
    print(HEADER, flush=True)
    rows = []
    port = 20554
    for n in sizes:
        for kind in a.servers.split(","):
            port += 4
            r = one(kind, n, a.duration, a.ramp, media, clip, port)
            rows.append(r)
            print(row(r), flush=True)
            if r["scraped"]:
                print(f"<!-- {kind} {n}: scrapes {r['scraped']} -->", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(HEADER + "\n" + "\n".join(row(r) for r in rows) + "\n")
        with open(a.out + ".jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
