"""test/gateway/clients.py: the gateway through Python requests, a real client.

    clients.py session URL [CA]       keep-alive Session: /store, /v1/events,
                                      /v1/batch, errors; prints JSON
    clients.py concurrent URL N BAD   N requests at once (BAD of them invalid),
                                      each on its own connection; prints JSON with
                                      every answer (index, status, message_id, error)
    clients.py load URL SECONDS OUT   send /store requests from 16 threads until
                                      SECONDS pass, writing one line per request
                                      to OUT: "<client message id> <status or err>"
"""
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests


def session_checks(url, ca):
    s = requests.Session()
    verify = ca if ca else True
    out = {}
    r = s.post(url + "/store", json={"event_name": "page_view",
                                     "context": {"sent_at": 1690000000, "message_id": "py-1"},
                                     "data": {"url": "/py"}}, verify=verify)
    out["store"] = [r.status_code, r.json()]
    r = s.post(url + "/v1/events", json={"event_name": "page_view", "data": {"url": "/e"}, "key": "k"},
               verify=verify)
    out["events"] = [r.status_code, r.json()]
    r = s.post(url + "/v1/batch", json=[{"event_name": "page_view", "data": {"url": "/%d" % i}}
                                        for i in range(50)], verify=verify)
    out["batch"] = [r.status_code, r.json().get("accepted")]
    r = s.post(url + "/store", json={"event_name": "page_view", "data": {"url": 1}}, verify=verify)
    out["invalid"] = [r.status_code, r.json()]
    # Many requests on the session's one kept-alive connection.
    t0 = time.time()
    codes = [s.post(url + "/store", json={"event_name": "page_view", "data": {"url": "/k"}},
                    verify=verify).status_code for _ in range(200)]
    out["keepalive"] = [codes.count(200), round(time.time() - t0, 3)]
    print(json.dumps(out))


def concurrent(url, n, bad):
    bad_at = set(range(0, n, n // bad)) if bad else set()
    barrier = threading.Barrier(min(n, 200))

    def one(i):
        body = {"event_name": "page_view", "context": {"message_id": "gc-%d" % i},
                "data": {"url": 5 if i in bad_at else "/gc/%d" % i}}
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        r = requests.post(url + "/store", json=body, headers={"Connection": "close"}, timeout=60)
        j = r.json()
        return {"i": i, "bad": i in bad_at, "status": r.status_code,
                "message_id": j.get("message_id"), "error": j.get("error")}

    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(one, range(n)))
    print(json.dumps(answers))


def load(url, seconds, path):
    stop = time.time() + seconds
    lock = threading.Lock()
    counter = [0]
    f = open(path, "w")

    def worker():
        s = requests.Session()
        while time.time() < stop:
            with lock:
                counter[0] += 1
                i = counter[0]
            mid = "crash-%d" % i
            try:
                r = s.post(url + "/store", json={"event_name": "page_view", "context": {"message_id": mid},
                                                 "data": {"url": "/c/%d" % i}}, timeout=10)
                res = str(r.status_code) + " " + (r.json().get("message_id") or "-")
            except Exception as e:  # the crash: no answer
                res = "err " + type(e).__name__
                s = requests.Session()
                time.sleep(0.2)
            with lock:
                f.write("%s %s\n" % (mid, res))

    ts = [threading.Thread(target=worker) for _ in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    f.close()


cmd = sys.argv[1]
if cmd == "session":
    session_checks(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
elif cmd == "concurrent":
    concurrent(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
elif cmd == "load":
    load(sys.argv[2], float(sys.argv[3]), sys.argv[4])
