#!/usr/bin/env python3
"""A counting HTTP proxy in front of a registry (loopback only).

    countproxy.py LISTEN_PORT UPSTREAM_HOST:PORT [--port-file FILE]

Forwards every request to UPSTREAM unchanged (the Host header too, so the
registry's upload Locations name the proxy) and streams both bodies
through, counting per method and kind of path:

- blob:     /v2/<name>/blobs/<digest>
- upload:   /v2/<name>/blobs/uploads/...
- manifest: /v2/<name>/manifests/<ref>
- other:    /v2/, tags lists, ...

`GET /_count` answers the counters as JSON (`{"GET blob": {"requests": n,
"sent": request body bytes, "received": response body bytes}, ...}`) and
`POST /_reset` zeroes them; neither is forwarded. With LISTEN_PORT 0 a
free port is picked and written to --port-file.
"""
import argparse
import http.client
import json
import re
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 256 * 1024
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}

lock = threading.Lock()
counts = {}


def kind(path):
    p = path.split("?", 1)[0]
    if re.search(r"/blobs/uploads(/|$)", p):
        return "upload"
    if "/blobs/" in p:
        return "blob"
    if "/manifests/" in p:
        return "manifest"
    return "other"


def add(key, requests=0, sent=0, received=0):
    with lock:
        c = counts.setdefault(key, {"requests": 0, "sent": 0, "received": 0})
        c["requests"] += requests
        c["sent"] += sent
        c["received"] += received


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None

    def log_message(self, *args):
        pass

    def conn(self):
        c = getattr(self, "_up", None)
        if c is None:
            host, port = self.upstream.rsplit(":", 1)
            c = self._up = http.client.HTTPConnection(host, int(port), timeout=600)
        return c

    def control(self):
        if self.path == "/_count" and self.command == "GET":
            with lock:
                body = json.dumps(counts, sort_keys=True).encode()
        elif self.path == "/_reset" and self.command == "POST":
            with lock:
                counts.clear()
            body = b"{}"
        else:
            return False
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return True

    def body_chunks(self):
        """The request body, as it arrives (Content-Length or chunked)."""
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";", 1)[0].strip(), 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = n
                while left:
                    b = self.rfile.read(min(left, CHUNK))
                    if not b:
                        return
                    left -= len(b)
                    yield b
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                b = self.rfile.read(min(left, CHUNK))
                if not b:
                    return
                left -= len(b)
                yield b

    def forward(self):
        if self.control():
            return
        key = f"{self.command} {kind(self.path)}"
        sent = 0
        c = self.conn()
        try:
            c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    c.putheader(k, v)
            if chunked:
                c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            for b in self.body_chunks():
                sent += len(b)
                if chunked:
                    c.send(b"%x\r\n" % len(b) + b + b"\r\n")
                else:
                    c.send(b)
            if chunked:
                c.send(b"0\r\n\r\n")
            r = c.getresponse()
        except (OSError, http.client.HTTPException):
            self._up = None
            c.close()
            add(key, requests=1, sent=sent)
            self.send_error(502)
            return
        self.send_response_only(r.status, r.reason)
        length = r.getheader("Content-Length")
        for k, v in r.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        no_body = self.command == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200
        rechunk = not no_body and length is None
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        received = 0
        if not no_body:
            while True:
                b = r.read(CHUNK)
                if not b:
                    break
                received += len(b)
                self.wfile.write(b"%x\r\n" % len(b) + b + b"\r\n" if rechunk else b)
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
        else:
            r.read()
        if r.will_close:
            self._up = None
            c.close()
        add(key, requests=1, sent=sent, received=received)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("upstream")
    p.add_argument("--port-file")
    a = p.parse_args()
    Handler.upstream = a.upstream
    srv = Server(("127.0.0.1", a.port), Handler)
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as fh:
            fh.write(str(srv.server_address[1]))
        os.rename(a.port_file + ".tmp", a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
