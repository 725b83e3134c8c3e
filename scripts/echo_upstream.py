#!/usr/bin/env python3
"""Echo upstream for demos and tests: answers every method on every path with 200 and a JSON
body describing the request as it reached the upstream, so a caller can see what the filter
forwarded (claim headers set, token stripped, path rewritten).

Usage: echo_upstream.py [PORT] [HOST]   (defaults: 8080 127.0.0.1)
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 so Envoy can keep its upstream connections alive.
    protocol_version = "HTTP/1.1"

    def _echo(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)  # drain the body so the connection stays usable
        # Repeated headers are joined with ", " so none is silently lost.
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = json.dumps({"method": self.command, "path": self.path, "headers": headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # http.server dispatches method X to do_X; answer every method, even unusual ones.
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._echo
        raise AttributeError(name)

    def log_message(self, format, *args):
        pass  # keep the demo's terminal for Envoy's access log


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = ThreadingHTTPServer((host, port), EchoHandler)
    print(f"echo upstream listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
