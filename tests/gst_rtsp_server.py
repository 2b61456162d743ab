#!/usr/bin/python3
"""A GStreamer RTSP server (gst-rtsp-server) for tests/pull.rs.

Serves a live test picture (H.264) and tone (Opus) at rtsp://127.0.0.1:PORT/test
and prints, one line each, flushed:

    PORT <n>                 once listening (PORT 0 in argv: any free port)
    CLIENT <n>               a client connection opened (n = how many so far)
    SESSION <n>              a client created a session (n = how many so far)
    TEARDOWN                 a client sent TEARDOWN
    CLOSED <n>               a client connection closed (n = still open)

Usage: gst_rtsp_server.py PORT [CLIP.mp4]

With CLIP.mp4 (H.264 and AAC), it serves that file once, in real time,
instead of the test picture and tone.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=25/1 ! videoconvert "
    "! openh264enc gop-size=25 ! h264parse "
    "! rtph264pay name=pay0 pt=96 config-interval=1 "
    "audiotestsrc is-live=true ! audioconvert ! audioresample "
    "! opusenc ! rtpopuspay name=pay1 pt=97 )"
)


def say(line):
    print(line, flush=True)


def main():
    Gst.init(None)
    port = sys.argv[1] if len(sys.argv) > 1 else "0"
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    launch = LAUNCH
    if len(sys.argv) > 2:
        launch = (
            "( filesrc location=%s ! qtdemux name=d "
            "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 "
            "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )" % sys.argv[2]
        )
    factory.set_launch(launch)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    counts = {"clients": 0, "open": 0, "sessions": 0}

    def on_closed(_client):
        counts["open"] -= 1
        say("CLOSED %d" % counts["open"])

    def on_session(_client, _session):
        counts["sessions"] += 1
        say("SESSION %d" % counts["sessions"])

    def on_teardown(_client, _ctx):
        say("TEARDOWN")

    def on_client(_server, client):
        counts["clients"] += 1
        counts["open"] += 1
        say("CLIENT %d" % counts["clients"])
        client.connect("closed", on_closed)
        client.connect("new-session", on_session)
        client.connect("teardown-request", on_teardown)

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        say("ERROR cannot listen")
        sys.exit(1)
    say("PORT %d" % server.get_bound_port())
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
