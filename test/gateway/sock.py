"""test/gateway/sock.py: raw-socket checks of the gateway's HTTP/1.1 handling.

    sock.py pipeline PORT N         N POSTs with a body in one write; the answers
                                    until the server closes, in order
    sock.py pipeline-mixed PORT N   in one write: a POST with a body, then GETs and
                                    POSTs with Content-Length: 0; N answers, in order
    sock.py pipeline-slow PORT GAP  a POST and a GET in one write, then GAP seconds
                                    later (while the POST's group waits) a second
                                    POST; the three answers, in order, and how
                                    long the first took
    sock.py pipeline-big PORT       GET /openapi.json (an answer lws sends in parts)
                                    and a GET behind it in one write; both answers,
                                    and whether the server closed
    sock.py slowloris PORT SECS     headers one byte a second; closed within SECS
    sock.py idle PORT SECS          a kept-alive idle connection is closed within SECS
    sock.py hold PORT N SECS        open N connections, hold them SECS; prints how many
                                    the server closed at once (refused)
    sock.py bigheader PORT BYTES    one header of BYTES; prints the status line

Each prints one line of JSON for the shell script to check.
"""
import json
import re
import socket
import sys
import time


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request(i, prefix="pipe"):
    body = json.dumps({"event_name": "page_view", "context": {"message_id": "%s-%d" % (prefix, i)},
                       "data": {"url": "/p%d" % i}}).encode()
    return (b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def bodyless(i, prefix="pipe"):
    """A GET, or a POST with Content-Length: 0, to a path naming it (404)."""
    if i % 2:
        return b"GET /%s-%d HTTP/1.1\r\nHost: x\r\n\r\n" % (prefix.encode(), i)
    return b"POST /%s-%d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" % (prefix.encode(), i)


def summary(answers, prefix="pipe"):
    """Status, error code, and the request each answer names, in order."""
    ids = []
    for a in answers:
        b = a["body"] if isinstance(a["body"], dict) else {}
        m = b.get("client_message_id") or re.search(r"%s-[0-9]+" % prefix, json.dumps(b))
        ids.append(m if isinstance(m, str) or m is None else m.group(0))
    return {"n": len(answers), "statuses": [a["status"] for a in answers],
            "codes": [(a["body"] or {}).get("error", {}).get("code") if isinstance(a["body"], dict)
                      else None for a in answers],
            "ids": ids,
            "message_ids": [(a["body"] or {}).get("message_id") if isinstance(a["body"], dict)
                            else None for a in answers]}


def recv_some(s):
    """Bytes from s; b"" once the server closed (or reset) it, or went quiet."""
    try:
        return s.recv(65536)
    except (ConnectionResetError, socket.timeout):
        return b""


def read_answers(s, n, times=None):
    """Read n HTTP answers (Content-Length framed), or those before the close;
    times, if given, gets the time each was complete."""
    buf = b""
    out = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = recv_some(s)
            if not chunk:
                return out
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        while len(rest) < length:
            chunk = recv_some(s)
            if not chunk:
                return out
            rest += chunk
        out.append({"status": int(head.split(b" ")[1]), "body": json.loads(rest[:length] or b"null")})
        if times is not None:
            times.append(time.time())
        buf = rest[length:]
    return out


def closed_within(s, secs):
    """Seconds until the server closed s, or None if it stayed open."""
    t0 = time.time()
    s.settimeout(0.2)
    while time.time() - t0 < secs:
        try:
            if s.recv(4096) == b"":
                return time.time() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.time() - t0
    return None


def main():
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "pipeline":
        n = int(sys.argv[3])
        s = connect(port)
        s.sendall(b"".join(request(i) for i in range(n)))
        out = summary(read_answers(s, n))
        out["closed"] = closed_within(s, 2.0) is not None
        print(json.dumps(out))
    elif cmd == "pipeline-mixed":
        n = int(sys.argv[3])
        s = connect(port)
        s.sendall(request(0, "mixed") + b"".join(bodyless(i, "mixed") for i in range(1, n)))
        print(json.dumps(summary(read_answers(s, n), "mixed")))
    elif cmd == "pipeline-slow":
        gap = float(sys.argv[3])
        s = connect(port)
        t0 = time.time()
        s.sendall(request(0, "slow") + bodyless(1, "slow"))
        time.sleep(gap)
        s.sendall(request(2, "slow"))
        times = []
        out = summary(read_answers(s, 3, times), "slow")
        out["first_after"] = times[0] - t0 if times else None
        print(json.dumps(out))
    elif cmd == "pipeline-big":
        s = connect(port)
        s.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" + bodyless(1, "big"))
        answers = read_answers(s, 3)
        out = summary(answers, "big")
        out["first_paths"] = len((answers[0]["body"] or {}).get("paths", {})) if answers else 0
        out["closed"] = closed_within(s, 2.0) is not None
        print(json.dumps(out))
    elif cmd == "slowloris":
        secs = float(sys.argv[3])
        s = connect(port)
        t0 = time.time()
        head = b"POST /store HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        closed = None
        for b in head:
            try:
                s.send(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = time.time() - t0
                break
            c = closed_within(s, 1.0)
            if c is not None:
                closed = time.time() - t0
                break
            if time.time() - t0 > secs:
                break
        print(json.dumps({"closed_after": closed}))
    elif cmd == "idle":
        secs = float(sys.argv[3])
        s = connect(port)
        s.sendall(request(0))
        first = read_answers(s, 1)
        print(json.dumps({"first": first[0]["status"] if first else None,
                          "closed_after": closed_within(s, secs)}))
    elif cmd == "hold":
        n, secs = int(sys.argv[3]), float(sys.argv[4])
        socks = [connect(port) for _ in range(n)]
        time.sleep(0.5)
        refused = 0
        for s in socks:
            s.settimeout(0.05)
            try:
                if s.recv(1) == b"":
                    refused += 1
            except socket.timeout:
                pass
            except ConnectionResetError:
                refused += 1
        time.sleep(max(0.0, secs - 0.5))
        print(json.dumps({"refused": refused}))
    elif cmd == "bigheader":
        size = int(sys.argv[3])
        s = connect(port)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * size + b"\r\n\r\n")
        s.settimeout(5)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        print(json.dumps({"status_line": line}))


main()
