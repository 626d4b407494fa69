"""The floor: a server that answers every request with one precomputed /metrics response.

``python3 -m benchmarks.floor --port P --response FILE`` serves FILE (a raw HTTP response
captured from the exporter: status line, headers, body) with the standard library's
``ThreadingHTTPServer``: a thread per connection and HTTP/1.0, like the exporter's own server,
in the same language, but with nothing to render. ``--raw`` is the lower floor: one thread,
``accept``, read the request head, ``sendall`` the captured bytes, close.
"""

from __future__ import annotations

import argparse
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def parse(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    keep = ("content-type", "content-encoding")
    headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.strip().lower() in keep]
    return status, headers, body


def serve_http(port: int, raw: bytes) -> None:
    status, headers, body = parse(raw)
    length = str(len(body))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", length)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    Server(("127.0.0.1", port), Handler).serve_forever()


def serve_raw(port: int, raw: bytes) -> None:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)
    while True:
        conn, _ = ls.accept()
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buf += chunk
            conn.sendall(raw)
        except OSError:
            pass
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--response", type=Path, required=True)
    ap.add_argument("--raw", action="store_true")
    a = ap.parse_args(argv)
    raw = a.response.read_bytes()
    try:
        (serve_raw if a.raw else serve_http)(a.port, raw)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
