#!/usr/bin/python3
"""The peer for the load ladder: gst-rtsp-server (Debian's GstRtspServer
bindings) serving one WAV file as L16 over RTP, the way rtspd serves it.

    benches/gst_rtsp_server.py CLIP.wav PORT [--shared] [--pcmu]

Serves rtsp://127.0.0.1:PORT/clip. Without --shared every client gets its
own pipeline (on-demand, its own timeline, like rtspd); with --shared all
clients share one pipeline (live-like fan-out). The pipeline reads the file,
converts to S16BE and packetizes 20 ms L16 packets (rtpL16pay
min-ptime/max-ptime), so the packet rate matches rtspd's. With --pcmu it
sends G.711 µ-law (mulawenc ! rtppcmupay) instead, for the live-channel
comparison.

Needs: python3-gi, python3-gst-1.0, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-good (wavparse, rtpL16pay).
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    clip, port = args
    shared = "--shared" in sys.argv
    pcmu = "--pcmu" in sys.argv
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # 20 ms packets: 20,000,000 ns for both bounds.
    if pcmu:
        tail = ("audioresample ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! "
                "rtppcmupay name=pay0 pt=0 min-ptime=20000000 max-ptime=20000000")
    else:
        tail = ("audio/x-raw,format=S16BE ! "
                "rtpL16pay name=pay0 pt=96 min-ptime=20000000 max-ptime=20000000")
    factory.set_launch(f'( filesrc location="{clip}" ! wavparse ! audioconvert ! {tail} )')
    factory.set_shared(shared)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        print("cannot attach the server", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"gst-rtsp-server on rtsp://127.0.0.1:{port}/clip (shared={shared})", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
