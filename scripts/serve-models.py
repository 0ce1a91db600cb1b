#!/usr/bin/env python3
"""Serve a folder over HTTP with CORS headers, for the browser tests' model files (the
wasm-bindgen test runner serves only its own files, from another origin).

    scripts/serve-models.py DIR [PORT]     (PORT 0, the default: any free port)

Prints the server's URL on its first line of output once it listens.
"""
import functools
import http.server
import sys


class CorsHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, *args):
        pass  # the test output is the runner's


def main():
    folder = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    handler = functools.partial(CorsHandler, directory=folder)
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
