#!/usr/bin/env python3
"""The local demo destination of `make run`: an HTTP log intake that appends every event it
receives to `<dir>/<stream>.ndjson` (the stream is the URL's last path segment), one JSON
object per line, so `tail -f .run/received/*.ndjson` shows deliveries as they arrive.

Accepts what sink-http sends with the generic preset: a JSON array (default) or NDJSON,
optionally gzip-compressed. Answers 200 once the events are written and flushed to disk
(the sink acks only after that, so nothing it confirmed is lost), 400 for a body it cannot
read. Standard library only.

usage: demo-receiver.py --port 8099 --dir .run/received
"""

import argparse
import gzip
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SAFE = re.compile(r"[^A-Za-z0-9._-]")


def events(body: bytes, content_type: str):
    text = body.decode("utf-8")
    if "ndjson" in content_type:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    value = json.loads(text) if text.strip() else []
    return value if isinstance(value, list) else [value]


class Handler(BaseHTTPRequestHandler):
    server_version = "auditstream-demo-receiver"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            received = events(body, self.headers.get("Content-Type", ""))
        except (ValueError, OSError) as e:
            self.answer(400, {"error": f"cannot read the body: {e}"})
            return
        stream = SAFE.sub("_", self.path.rstrip("/").rsplit("/", 1)[-1] or "default")
        path = os.path.join(self.server.dir, f"{stream}.ndjson")
        with LOCK, open(path, "a", encoding="utf-8") as f:
            for event in received:
                f.write(json.dumps(event, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.answer(200, {"received": len(received)})

    def do_GET(self):  # noqa: N802
        if self.path == "/healthz":
            self.answer(200, {"ok": True})
        else:
            self.answer(404, {"error": "POST events to /<stream>"})

    def answer(self, status, document):
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        # One line per request on stderr (the run directory's demo-receiver.log).
        super().log_message(fmt, *args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dir", default=".run/received")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.dir = args.dir
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
