"""Open N keep-alive connections to the gateway, one request each, and hold them.

    idle_conns.py HOST PORT N READY_FILE

Writes how many are open to READY_FILE once every one got its answer, then
sleeps until killed.
"""
import socket
import sys
import time

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
socks = []
for i in range(n):
    s = socket.create_connection((host, port))
    s.sendall(req)
    socks.append(s)
    if len(socks) % 500 == 0:
        for t in socks[-500:]:
            t.settimeout(10)
            t.recv(4096)
for t in socks[len(socks) - len(socks) % 500:]:
    t.settimeout(10)
    t.recv(4096)
with open(ready, "w") as f:
    f.write(str(len(socks)))
while True:
    time.sleep(60)
