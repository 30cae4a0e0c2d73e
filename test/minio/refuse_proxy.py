#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of MinIO, for test/minio/concurrency.sh.

  refuse_proxy.py PORT UPSTREAM_URL FLAG_FILE PASS_FIRST

Forwards every request to UPSTREAM_URL unchanged (the Host header too, so
the client's SigV4 signature still holds), on as many threads as the client
has connections.  While FLAG_FILE exists, every PUT after the first
PASS_FIRST ones is answered 403 AccessDenied without being forwarded: a
4xx in the middle of a client's concurrent batch.  Counts go to stdout, one
line per PUT: "forwarded N" or "refused N".
"""
import http.client
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

PORT = int(sys.argv[1])
UP = urlparse(sys.argv[2])
FLAG = sys.argv[3]
PASS_FIRST = int(sys.argv[4])
lock = threading.Lock()
puts = 0
REFUSAL = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
           b'<Message>Refused by the test proxy.</Message></Error>')


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        global puts
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if self.command == "PUT":
            with lock:
                puts += 1
                refuse = os.path.exists(FLAG) and puts > PASS_FIRST
                print(("refused %d" if refuse else "forwarded %d") % puts, flush=True)
            if refuse:
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(REFUSAL)))
                self.end_headers()
                self.wfile.write(REFUSAL)
                return
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=30)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in ("expect", "connection"):
                conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_PUT = do_GET = do_HEAD = do_DELETE = do_POST = relay


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
