#!/usr/bin/env python3
"""The load ladder of docs/PERFORMANCE.md: rtspd and gst-rtsp-server serving
the same 8 kHz mono clip, measured by `rtspd load` in one run.

    benches/ladder.py [--sizes 100,500,1000,2000,4000] [--duration 20]
                      [--ramp 200] [--servers rtspd,gst,gst-shared] [--out FILE.md]
                      [--live] [--rtspd-args "..."] [--load-args "..."]

Each server runs pinned to core 0 (taskset), the tester to core 1. For each
size it starts a fresh server, warms it with one session (so the clip is
loaded), reads the server's CPU time and RSS, runs the load, samples the
RSS once every session is playing, and reads the CPU time again. Output: one
Markdown table row per run (and the raw JSON lines in FILE.md.jsonl).

Needs a release build (`cargo build --release`), ffmpeg (to make the clip),
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
RTSPD = os.path.join(ROOT, "target", "release", "rtspd")
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


def start_server(kind, media, clip, port, rtp_port):
    if kind == "rtspd":
        cmd = [RTSPD, "--bind", "127.0.0.1", "--port", str(port), "--rtp-port", str(rtp_port),
               "--media", media, "--max-sessions-per-ip", "20000",
               "--max-connections-per-ip", "20000"] + RTSPD_ARGS
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
        # CPU is charged over the steady state only: from 2 s after the last
        # session started to 2 s before the first one ends.
        time.sleep(n / ramp + 2)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(max(duration - 4 - n / ramp, 1))
        cpu = cpu_seconds(server.pid) - cpu0
        wall = time.monotonic() - t0
        rss_mid = rss_kib(server.pid)
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
    ap.add_argument("--live", action="store_true",
                    help="one shared PCMU timeline: rtspd --live against gst shared media")
    a = ap.parse_args()
    RTSPD_ARGS.extend(a.rtspd_args.split())
    LOAD_ARGS.extend(a.load_args.split())
    if a.live:
        LIVE.append(True)
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
    if a.out:
        with open(a.out, "w") as f:
            f.write(HEADER + "\n" + "\n".join(row(r) for r in rows) + "\n")
        with open(a.out + ".jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
