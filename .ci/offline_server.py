#!/usr/bin/env python3
"""The offline example's server: its page's files, and the messages it is sent.

- GET  /...       the files of --directory (the page, its module, its service worker);
- POST /send      a message, JSON {"key", "text"}: numbered in the order first seen (a key
                  seen before gets its number again, so a resend is not a second message),
                  answered {"number": n}; a text containing "poison" is refused (422);
- GET  /received  every text posted, in arrival order, refusals included (for the checks).

Python's standard library only; it listens on 127.0.0.1.

    python3 .ci/offline_server.py --directory target/offline-example --port 8000
"""

import argparse
import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
NUMBERS = {}  # key -> number
RECEIVED = []  # texts, in arrival order


class Handler(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
    }

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/received":
            with LOCK:
                self.answer(200, list(RECEIVED))
            return
        super().do_GET()

    def do_POST(self):
        if self.path != "/send":
            self.answer(404, {"error": "no such endpoint"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            message = json.loads(self.rfile.read(length) or b"{}")
            key, text = str(message["key"]), str(message["text"])
        except (ValueError, KeyError, TypeError):
            self.answer(400, {"error": "expected JSON {\"key\", \"text\"}"})
            return
        with LOCK:
            RECEIVED.append(text)
            if "poison" in text:
                status, body = 422, {"error": "the server refuses messages with poison in them"}
            else:
                number = NUMBERS.setdefault(key, len(NUMBERS) + 1)
                status, body = 200, {"number": number}
        self.answer(status, body)

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        print("%s %s" % (self.address_string(), format % args), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--directory", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    handler = functools.partial(Handler, directory=args.directory)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print("serving {} on 127.0.0.1:{}".format(args.directory, args.port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
