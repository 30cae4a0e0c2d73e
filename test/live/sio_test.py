"""test/live/sio_test.py: the live rooms against socket.io's own Python client.

    python sio_test.py seed URL KEY TRANSPORT   every seed event, auth, catch-up
    python sio_test.py crowd URL KEY N ROOMS    N concurrent clients on ROOMS rooms
    python sio_test.py bad URL KEY MAXPAYLOAD   malformed input; the server goes on
    python sio_test.py plain URL KEY            /v1/live, /v1/status and the pages' files
    python sio_test.py slow URL KEY QUEUE_MAX   a client that overflows its queue is dropped

TRANSPORT is "default" (polling, then the upgrade to WebSocket) or
"websocket" (WebSocket alone).  Aggregates are made the real way: events
with evc_send, landed by the table sink, evc_aggregate, the outbox, Kafka,
and the aggregates sink (test/live/live.sh sets that up).  The database is
reached with psql (PGHOST, PGPORT, PGUSER, database evc_test).  Prints TAP.
"""
import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request

import socketio
import websocket

N = 0
FAILED = 0


def ok(cond, name, diag=None):
    global N, FAILED
    N += 1
    if not cond:
        FAILED += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (N, name), flush=True)
    if not cond and diag is not None:
        for line in str(diag).splitlines()[:20]:
            print("# " + line, flush=True)


def sql(query):
    out = subprocess.run(["psql", "-X", "-qAt", "-d", "evc_test", "-v", "ON_ERROR_STOP=1", "-c", query],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def wait_sql(query, secs=60):
    end = time.time() + secs
    while time.time() < end:
        if sql(query) == "t":
            return True
        time.sleep(0.2)
    return False


WINDOWS = {1: "1 minute", 5: "5 minutes", 10: "10 minutes"}


def land(room_values, at):
    """Send readings (room -> list of values) at time `at` (SQL timestamptz
    expression), wait for the table sink, run evc_aggregate for every window;
    returns when evc.aggregates holds the landed rows of those rooms."""
    rows = ",".join("(%s, %s)" % (json.dumps(r).replace('"', "'"), v)
                    for r, vs in room_values.items() for v in vs)
    n = sum(len(vs) for vs in room_values.values())
    before = sql("SELECT count(*) FROM evc.events WHERE client = 'livetest'")
    sql("SELECT count(evc_send('livetest', 'reading', jsonb_build_object('room', r, 'value', v), "
        "jsonb_build_object('sent_at', %s)) ) FROM (VALUES %s) AS t(r, v)" % (at, rows))
    if not wait_sql("SELECT count(*) >= %d FROM evc.events WHERE client = 'livetest'" % (int(before) + n), 60):
        raise RuntimeError("the readings did not land in evc.events")
    for w in WINDOWS.values():
        sql("SELECT evc_aggregate('%s')" % w)


async def aland(room_values, at):
    """land() off the event loop, so that the clients keep answering pings."""
    await asyncio.to_thread(land, room_values, at)


async def await_sql(query, secs=60):
    return await asyncio.to_thread(wait_sql, query, secs)


async def asql(query):
    return await asyncio.to_thread(sql, query)


def aggregates_of(rooms, since_sql):
    q = ("SELECT coalesce(json_agg(json_build_object('room', group_key, 'function', function, "
         "'window', extract(epoch FROM window_length)::int, 'start', window_start, 'revision', revision, "
         "'value', value, 'count', count)), '[]') FROM evc.aggregates WHERE client = 'livetest' "
         "AND group_key = ANY ('{%s}') AND updated_at >= %s" % (",".join(rooms), since_sql))
    return json.loads(sql(q))


def key_of(a):
    return (a["room"], a["function"], a["start"][:19])


# ---------------------------------------------------------------- seed

async def seed(url, key, transport):
    transports = ["websocket"] if transport == "websocket" else ["polling", "websocket"]
    tag = "[%s] " % transport
    pushes = {1: [], 5: [], 10: []}
    errors = []

    # a bad key: CONNECT_ERROR, which the client raises
    bad = socketio.AsyncClient(reconnection=False)
    refused = []
    bad.on("connect_error", lambda data: refused.append(data))
    try:
        await bad.connect(url, transports=transports, auth={"token": "evk_1_" + "0" * 64}, wait_timeout=10)
        ok(False, tag + "a bad key is refused with CONNECT_ERROR")
        await bad.disconnect()
    except socketio.exceptions.ConnectionError as e:
        ok(refused and "not known" in json.dumps(refused), tag + "a bad key is refused with CONNECT_ERROR naming why",
           (str(e), refused))

    sio = socketio.AsyncClient(reconnection=False)
    for n in pushes:
        sio.on("live_aggregations_%d" % n, (lambda n: lambda a: pushes[n].append(a))(n))
    sio.on("live_error", lambda e: errors.append(e))
    await sio.connect(url, transports=transports, auth={"token": key}, wait_timeout=10)
    ok(sio.connected, tag + "CONNECT with auth {token: a read-only key}")
    if transport == "default":
        for _ in range(50):
            if sio.transport() == "websocket":
                break
            await asyncio.sleep(0.1)
        ok(sio.transport() == "websocket", tag + "the client started with polling and upgraded to WebSocket",
           sio.transport())
    else:
        ok(sio.transport() == "websocket", tag + "WebSocket alone")

    rooms = ["lt-%s-a" % transport, "lt-%s-b" % transport]
    other = "lt-%s-other" % transport
    r = await sio.call("register_room", rooms, timeout=10)
    ok(r == {"ok": True, "rooms": 2}, tag + "register_room takes an array of identifiers and is acknowledged", r)
    for n in (1, 5, 10):
        r = await sio.call("consume_%d_min_aggregations" % n, timeout=10)
        ok(r.get("ok") is True, tag + "consume_%d_min_aggregations is acknowledged" % n, r)

    # readings 25 minutes ago: closed windows of all three lengths
    mark = await asql("SELECT now()")
    at = "date_trunc('hour', now()) - interval '2 hours' + interval '%d minutes'" % (
        3 if transport == "default" else 33)
    await aland({rooms[0]: [1, 2, 3], rooms[1]: [10], other: [100]}, at)
    landed = await await_sql("SELECT count(*) >= 18 FROM evc.aggregates WHERE client = 'livetest' AND updated_at >= '%s' "
                      "AND group_key = ANY ('{%s}')" % (mark, ",".join(rooms + [other])), 60)
    want = aggregates_of(rooms + [other], "'%s'" % mark)
    ok(landed and len(want) == 18, tag + "the aggregates sink landed 18 aggregates (3 rooms, 2 functions, 3 windows)", want)
    end = time.time() + 10
    while time.time() < end and sum(len(p) for p in pushes.values()) < 12:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    for n in (1, 5, 10):
        got = pushes[n]
        expect = [a for a in want if a["window"] == n * 60 and a["room"] in rooms]
        ok(sorted(key_of(a) for a in got) == sorted(key_of(a) for a in expect) and len(got) == 4,
           tag + "live_aggregations_%d carried exactly the 4 aggregates of the client's rooms" % n,
           json.dumps({"got": got, "want": expect}, default=str))
    a = next((p for p in pushes[1] if p["room"] == rooms[0] and p["function"] == "sum"), None)
    ok(a is not None and set(a) >= {"room", "client", "event", "function", "window", "start", "value", "count", "revision"}
       and a["client"] == "livetest" and a["event"] == "reading" and a["value"] == 6 and a["count"] == 3
       and a["revision"] == 1 and a["window"] == "1m",
       tag + "a push carries room, client, event, function, window, start, value, count and revision", a)

    # an unknown event: live_error and a failed ack; the connection stays
    r = await sio.call("no_such_event", {"x": 1}, timeout=10)
    ok(r.get("ok") is False and r["error"]["code"] == "unknown_event", tag + "an unknown event gets a failed ack", r)
    await asyncio.sleep(0.3)
    ok(any(e.get("code") == "unknown_event" for e in errors) and sio.connected,
       tag + "... and a live_error event, and the client stays connected", errors)
    r = await sio.call("register_room", "not-an-array", timeout=10)
    ok(r.get("ok") is False and r["error"]["code"] == "bad_arguments", tag + "register_room without an array: bad_arguments", r)

    # reconnect with catch-up: a correction lands while the client is away
    last = max(pushes[1], key=lambda p: (p["start"], p["revision"]))
    await sio.disconnect()
    mark2 = await asql("SELECT now()")
    await aland({rooms[0]: [1000]}, at)          # a late reading: revision 2 of rooms[0]'s windows
    ok(await await_sql("SELECT count(*) >= 2 FROM evc.aggregates WHERE client = 'livetest' AND group_key = '%s' "
                "AND revision = 2 AND window_length = '1 minute'" % rooms[0], 60),
       tag + "while the client is away, a late reading makes revision 2 (count and sum)")
    sio2 = socketio.AsyncClient(reconnection=False)
    again = []
    sio2.on("live_aggregations_1", lambda a: again.append(a))
    await sio2.connect(url, transports=transports, auth={"token": key}, wait_timeout=10)
    await sio2.call("register_room", rooms, timeout=10)
    r = await sio2.call("consume_1_min_aggregations", {"last": last}, timeout=10)
    ok(r.get("ok") is True and r.get("caught_up", 0) >= 2, tag + "consume_1 with the last aggregate seen catches up", r)
    await asyncio.sleep(0.3)
    fixes = [p for p in again if p["room"] == rooms[0] and p["revision"] == 2]
    ok(len(fixes) == 2 and {p["function"] for p in fixes} == {"count", "sum"} and
       next(p for p in fixes if p["function"] == "sum")["value"] == 1006,
       tag + "the missed corrections arrive before the live pushes, with revision 2", again)
    # and the live pushes resume
    before = len(again)
    await aland({rooms[1]: [5]}, at)
    end = time.time() + 10
    while time.time() < end and not any(p["room"] == rooms[1] and p["revision"] == 2 for p in again[before:]):
        await asyncio.sleep(0.1)
    ok(any(p["room"] == rooms[1] and p["revision"] == 2 for p in again[before:]),
       tag + "after the catch-up the live pushes resume (a correction is pushed as such)", again[before:])
    r = await sio2.call("consume_1_min_aggregations", {"since": "not a time"}, timeout=10)
    ok(r.get("ok") is False, tag + "a catch-up time that is not a time is refused", r)
    await sio2.disconnect()


# ---------------------------------------------------------------- crowd

async def crowd(url, key, nclients, nrooms):
    rooms = ["crowd-%03d" % i for i in range(nrooms)]
    got = [[] for _ in range(nclients)]
    mine = [[rooms[i % nrooms], rooms[(i * 7 + 3) % nrooms]] for i in range(nclients)]
    clients = []
    sem = asyncio.Semaphore(50)

    async def start(i):
        c = socketio.AsyncClient(reconnection=False)
        c.on("live_aggregations_1", lambda a, i=i: got[i].append(a))
        async with sem:
            await c.connect(url, transports=["websocket"], auth={"token": key}, wait_timeout=30)
            await c.call("register_room", mine[i], timeout=30)
            await c.call("consume_1_min_aggregations", timeout=30)
        clients.append(c)

    t0 = time.time()
    res = await asyncio.gather(*(start(i) for i in range(nclients)), return_exceptions=True)
    fails = [r for r in res if isinstance(r, Exception)]
    ok(not fails, "%d clients connected, each in 2 of %d rooms (%.1f s)" % (nclients, nrooms, time.time() - t0),
       fails[:3])
    mark = await asql("SELECT now()")
    at = "date_trunc('hour', now()) - interval '3 hours'"
    await aland({r: [i + 1] for i, r in enumerate(rooms)}, at)
    await aland({r: [1000] for r in rooms[::2]}, at)            # corrections in half the rooms
    await await_sql("SELECT count(*) >= %d AND count(*) FILTER (WHERE revision = 2) >= %d FROM evc.aggregates "
             "WHERE client = 'livetest' AND group_key LIKE 'crowd-%%' AND window_length = '1 minute' "
             "AND updated_at >= '%s'" % (2 * nrooms, 2 * len(rooms[::2]), mark), 120)
    want = [a for a in aggregates_of(rooms, "'%s'" % mark) if a["window"] == 60]
    final = {key_of(a): a["revision"] for a in want}
    ok(len(want) == 2 * nrooms, "the sink landed 2 aggregates per room, half of them corrected", len(want))
    expected_msgs = sum(sum(final[k] for k in final if k[0] in set(m)) for m in mine)
    end = time.time() + 60
    while time.time() < end and sum(len(g) for g in got) < expected_msgs:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    wrong_room = exact = ordered = 0
    for i in range(nclients):
        own = set(mine[i])
        if any(a["room"] not in own for a in got[i]):
            wrong_room += 1
        seen = {}
        order_ok = True
        for a in got[i]:
            k = key_of(a)
            if a["revision"] != seen.get(k, 0) + 1:
                order_ok = False
            seen[k] = a["revision"]
        ordered += order_ok
        exact += seen == {k: r for k, r in final.items() if k[0] in own}
    ok(wrong_room == 0, "no client received an aggregate of a room it did not join", wrong_room)
    ok(exact == nclients, "every client received every revision of its rooms' aggregates (%d of %d)" % (exact, nclients))
    ok(ordered == nclients, "every client received each aggregate's revisions in order, once each (%d of %d)"
       % (ordered, nclients))
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)


# ---------------------------------------------------------------- a slow client

async def slow(url, key, queue_max):
    """evcollector.live_queue_max is queue_max here: one burst of more
    pushes than that for one client overflows its queue at once."""
    rooms = ["slow-%02d" % i for i in range(queue_max + 5)]
    errors, fast_got, slow_got = [], [], []
    slowc = socketio.AsyncClient(reconnection=False)
    slowc.on("live_error", lambda e: errors.append(e))
    slowc.on("live_aggregations_1", lambda a: slow_got.append(a))
    fast = socketio.AsyncClient(reconnection=False)
    fast.on("live_aggregations_1", lambda a: fast_got.append(a))
    for c, rs in ((slowc, rooms), (fast, rooms[:1])):
        await c.connect(url, transports=["websocket"], auth={"token": key}, wait_timeout=10)
        await c.call("register_room", rs, timeout=10)
        await c.call("consume_1_min_aggregations", timeout=10)
    mark = await asql("SELECT now()")
    await aland({r: [1] for r in rooms}, "date_trunc('hour', now()) - interval '5 hours'")
    await await_sql("SELECT count(*) >= %d FROM evc.aggregates WHERE group_key LIKE 'slow-%%' AND updated_at >= '%s'"
                    % (2 * len(rooms), mark), 60)
    end = time.time() + 10
    while time.time() < end and (slowc.connected or len(fast_got) < 2):
        await asyncio.sleep(0.1)
    ok(any(e.get("code") == "slow_consumer" for e in errors),
       "a client whose queue overflows is told slow_consumer", errors)
    ok(not slowc.connected and len(slow_got) < 2 * len(rooms), "... and dropped (%d of %d pushes reached it)"
       % (len(slow_got), 2 * len(rooms)))
    ok(len(fast_got) == 2 and fast.connected, "the other client got its room's pushes and stays", fast_got)
    await fast.disconnect()


# ---------------------------------------------------------------- bad input

def ws_url(url, query):
    return url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket" + query


def http(method, url, body=None):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "text/plain;charset=UTF-8"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ws_open(url):
    ws = websocket.create_connection(ws_url(url, ""), timeout=10)
    op = ws.recv()
    return ws, op


def bad(url, key, max_payload):
    # malformed Engine.IO
    ws, op = ws_open(url)
    ok(op.startswith("0{") and '"sid"' in op, "WebSocket alone: the first message is the open packet", op)
    ws.send("9garbage")
    msg = ws.recv()
    ok("protocol_error" in msg, "a malformed Engine.IO packet gets a protocol error", msg)
    try:
        ws.recv()
        closed = False
    except (websocket.WebSocketConnectionClosedException, websocket.WebSocketTimeoutException, ConnectionError):
        closed = True
    ok(closed or not ws.connected, "... and the connection is closed")
    ws.close()

    # malformed Socket.IO
    ws, op = ws_open(url)
    ws.send("40" + json.dumps({"token": key}))
    conn = ws.recv()
    ok(conn.startswith("40{\"sid\""), "CONNECT over raw WebSocket", conn)
    ws.send('42["register_room", [')
    msg = ws.recv()
    ok("protocol_error" in msg and "not valid JSON" in msg, "a malformed Socket.IO packet gets a protocol error", msg)
    ws.close()
    ws, op = ws_open(url)
    ws.send("451-[\"x\",{\"_placeholder\":true,\"num\":0}]")
    ok("protocol_error" in ws.recv(), "a binary Socket.IO event is refused")
    ws.close()

    # events before CONNECT
    ws, op = ws_open(url)
    ws.send('421["register_room",["r"]]')
    a, b = ws.recv(), ws.recv()
    ok("not_connected" in a + b, "an event before CONNECT is refused", a + b)
    ws.close()

    # an oversized frame
    ws, op = ws_open(url)
    try:
        ws.send("4" + "x" * (max_payload + 10))
        ws.recv()
        code = None
    except websocket.WebSocketConnectionClosedException:
        code = "closed"
    except Exception as e:  # noqa: BLE001 - the close frame may come as an exception of its own
        code = type(e).__name__
    ok(code is not None or ws.status == 1009 or not ws.connected,
       "a frame over evcollector.live_max_payload closes the connection", code)
    ws.close()

    # polling errors
    s, body = http("GET", url + "/socket.io/?EIO=3&transport=polling")
    ok(s == 400 and json.loads(body)["code"] == 5, "EIO=3: 400, Unsupported protocol version", (s, body))
    s, body = http("GET", url + "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA")
    ok(s == 400 and json.loads(body)["code"] == 1, "an unknown sid: 400, Session ID unknown", (s, body))
    s, body = http("GET", url + "/socket.io/?EIO=4&transport=carrier-pigeon")
    ok(s == 400 and json.loads(body)["code"] == 0, "an unknown transport: 400, Transport unknown", (s, body))
    s, body = http("GET", url + "/socket.io/?EIO=4&transport=polling")
    sid = json.loads(body[1:])["sid"]
    s, body = http("POST", url + "/socket.io/?EIO=4&transport=polling&sid=" + sid, ("4" + "y" * (max_payload + 10)).encode())
    ok(s == 413, "a polling body over evcollector.live_max_payload: 413", s)
    s, body = http("GET", url + "/socket.io/?EIO=4&transport=polling")
    sid = json.loads(body[1:])["sid"]
    s, body = http("POST", url + "/socket.io/?EIO=4&transport=polling&sid=" + sid, b"4\x1e\x1e2")
    s2, body2 = http("GET", url + "/socket.io/?EIO=4&transport=polling&sid=" + sid)
    ok(s == 200 and "protocol_error" in body2, "a malformed polling payload gets a protocol error", (s, body2))

    # a client that never answers pings (interval and timeout are 1 s here)
    ws, op = ws_open(url)
    t0 = time.time()
    pings = 0
    closed = False
    while time.time() - t0 < 10:
        try:
            m = ws.recv()
        except Exception:  # noqa: BLE001 - closed, one way or another
            closed = True
            break
        if m == "2":
            pings += 1
        if m == "" and not ws.connected:
            closed = True
            break
    ok(pings >= 1 and closed and time.time() - t0 < 6,
       "a client that never answers pings is closed after ping interval + timeout (%.1f s, %d pings)"
       % (time.time() - t0, pings))
    s, body = http("GET", url + "/socket.io/?EIO=4&transport=polling")
    sid = json.loads(body[1:])["sid"]
    time.sleep(3.5)
    s, body = http("GET", url + "/socket.io/?EIO=4&transport=polling&sid=" + sid)
    ok(s == 400 and json.loads(body)["code"] == 1, "a polling session that never polls is gone after its timeout",
       (s, body))

    # the plain WebSocket without an upgrade
    s, body = http("GET", url + "/v1/live?rooms=a")
    ok(s == 426, "GET /v1/live without an upgrade: 426", s)

    # the server goes on
    async def still():
        c = socketio.AsyncClient(reconnection=False)
        await c.connect(url, transports=["websocket"], auth={"token": key}, wait_timeout=10)
        r = await c.call("register_room", ["after-bad"], timeout=10)
        await c.disconnect()
        return r
    r = asyncio.run(still())
    ok(r == {"ok": True, "rooms": 1}, "after all that, a new client connects and registers", r)


# ---------------------------------------------------------------- plain WebSocket, status, pages

def plain(url, key):
    base = url.replace("http://", "ws://") + "/v1/live?"

    def read_all(ws, secs=2):
        msgs = []
        ws.settimeout(secs)
        try:
            while True:
                msgs.append(json.loads(ws.recv()))
        except Exception:  # noqa: BLE001 - the timeout or the close ends the read
            pass
        return msgs

    ws = websocket.create_connection(base + "rooms=lt-websocket-a,lt-websocket-b&window=1m&since=2000-01-01T00:00:00Z&token=" + key, timeout=10)
    got = read_all(ws, 5)
    ok(len(got) >= 4 and all(a.get("window") == "1m" and a["room"] in ("lt-websocket-a", "lt-websocket-b") for a in got),
       "/v1/live with since=: the rooms' aggregates of the window, as JSON of the push's shape", got[:6])
    ok(all(set(a) >= {"room", "client", "event", "function", "window", "start", "value", "count", "revision"} for a in got),
       "... each with room, client, event, function, window, start, value, count and revision")
    ws.close()
    ws = websocket.create_connection(base + "rooms=x&window=1m", timeout=10)
    got = read_all(ws)
    ok(got and got[0].get("error", {}).get("code") == "unauthorized", "/v1/live without a key: unauthorized, then closed", got)
    ws.close()
    ws = websocket.create_connection(base + "rooms=x&window=fortnight&token=" + key, timeout=10)
    got = read_all(ws)
    ok(got and got[0].get("error", {}).get("code") == "bad_window", "/v1/live with a bad window: bad_window", got)
    ws.close()
    ws = websocket.create_connection(base + "window=1m&token=" + key, timeout=10)
    got = read_all(ws)
    ok(got and got[0].get("error", {}).get("code") == "bad_rooms", "/v1/live without rooms: bad_rooms", got)
    ws.close()

    req = urllib.request.Request(url + "/v1/status", headers={"Authorization": "Bearer " + key})
    with urllib.request.urlopen(req, timeout=10) as r:
        st = json.loads(r.read())
    ok(set(st) >= {"at", "workers", "stats", "outbox", "lag", "dead_letters", "archive_files", "images", "live"},
       "GET /v1/status has every section", list(st))
    ok(any(w["kind"] == "gateway" for w in st["workers"]) and st["live"]["ring_records"] > 0,
       "... the gateway among the workers, and the ring's records counted", (st["workers"], st["live"]))
    s, body = http("GET", url + "/v1/status/nope")
    ok(s in (401, 404), "GET /v1/status/nope: an error, not a crash", (s, body))
    for path, ctype in (("/live", "text/html"), ("/live/live.js", "javascript"), ("/live/style.css", "text/css"),
                        ("/status", "text/html"), ("/live/status.js", "javascript")):
        with urllib.request.urlopen(url + path, timeout=10) as r:
            ok(r.status == 200 and ctype in r.headers.get("Content-Type", ""), "GET %s: %s" % (path, ctype),
               r.headers.get("Content-Type"))


def main():
    cmd = sys.argv[1]
    if cmd == "seed":
        asyncio.run(seed(sys.argv[2], sys.argv[3], sys.argv[4]))
    elif cmd == "crowd":
        asyncio.run(crowd(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
    elif cmd == "slow":
        asyncio.run(slow(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif cmd == "plain":
        plain(sys.argv[2], sys.argv[3])
    elif cmd == "bad":
        bad(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    print("1..%d" % N)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
