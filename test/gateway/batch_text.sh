# test/gateway/batch_text.sh: POST /v1/batch reads a batch of plain, valid
# events straight from its text, without jsonb (routes_send.c,
# src/jsonschema/validate_textapi.c), and must give the bytes the jsonb way
# gives: each event's data_json on Kafka is its data as jsonb prints it
# (keys in jsonb's order, the last duplicate kept, numbers as numeric
# writes them, strings unescaped and escaped again), and its key is the
# Kafka key.  A batch with what only the jsonb way can tell (an exponent, a
# negative zero, a number too long to be exact) takes that way and must
# come out the same.
# Sourced by test/run with test/lib.sh, test/gateway/lib.sh; prints TAP.
. "$EVC_ROOT/test/tap.sh"

q "SELECT evc_register_schema('bt', 'any', '{\"type\":\"object\"}')" >/dev/null

# Each line: one event's data, as a client writes it.
cat >"$EVC_RUN/tmp/bt-text.txt" <<'EOF'
{"url":"/x"}
{"bbb":1,"a":2,"cc":3,"a":4}
{"n":[0,-1,1.50,123456789012345678,0.000100,-12.5,-0.5],"t":true,"f":false,"z":null}
{"s":"caf\u00e9 \ud83d\ude00 \n\t\"\\\/ \u001f \u007f é \b\f\r"}
{"deep":{"x":[[],{},[{"k":"v"}]],"y":{"b":{},"a":[]}}}
{" ":"","ключ":"значение","":1, "spaced" : [ 1 , 2 ] }
EOF
cat >"$EVC_RUN/tmp/bt-jsonb.txt" <<'EOF'
{"url":"/y"}
{"e":1e2,"E":-2.5E-3}
{"m":-0,"m2":-0.00}
{"big":123456789012345678901234567890.5}
EOF

# Post each file as one batch (keyed "k<line>"), then read the topic back
# and compare every event's data_json and key with what jsonb says.
"$GW_PY" - "$GW_URL" "$EVC_RUN/tmp" "$EVC_KAFKA_BOOTSTRAP" <<'PY' >"$EVC_RUN/tmp/bt.out" 2>&1
import json, subprocess, sys, urllib.request

url, tmp, bootstrap = sys.argv[1:4]
failures = []

def varint(b, i):
    r = s = 0
    while True:
        c = b[i]; i += 1
        r |= (c & 0x7F) << s; s += 7
        if c < 0x80:
            return r, i

def fields(b):
    i, out = 0, {}
    while i < len(b):
        tag, i = varint(b, i)
        if tag & 7 == 0:
            v, i = varint(b, i)
        elif tag & 7 == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % (tag & 7))
        out[tag >> 3] = v
    return out

expected = {}                   # message_id -> (data_json jsonb prints, key)
for name in ("bt-text.txt", "bt-jsonb.txt"):
    datas = [l.rstrip("\n") for l in open("%s/%s" % (tmp, name), encoding="utf-8") if l.strip()]
    body = "[" + ",".join('{"event_name":"any","key":"k%d-\u00fc","data":%s}' % (i, d)
                          for i, d in enumerate(datas)) + "]"
    req = urllib.request.Request(url + "/v1/batch", body.encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Evc-Client": "bt"})
    answer = json.load(urllib.request.urlopen(req))
    if answer.get("accepted") != len(datas) or [r["index"] for r in answer["results"]] != list(range(len(datas))):
        failures.append("%s: not all accepted in order: %s" % (name, answer))
        continue
    for i, (d, r) in enumerate(zip(datas, answer["results"])):
        printed = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-d", "evc_test", "-v", "d=" + d],
                                 input="SELECT (:'d')::jsonb::text;\n",
                                 capture_output=True, text=True, check=True).stdout.rstrip("\n")
        expected[r["message_id"]] = (printed, "k%d-\u00fc" % i)

subprocess.run(["psql", "-X", "-q", "-d", "evc_test", "-c", "SELECT evc_flush('30 s')"],
               capture_output=True, check=True)
raw = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", "bt.any", "-e", "-q",
                      "-f", "%S %K %k%s"], capture_output=True, check=True).stdout
seen = {}
i = 0
while i < len(raw):
    # "<payload bytes> <key bytes> <key><payload>", one message after another
    sp = raw.index(b" ", i); size = int(raw[i:sp]); i = sp + 1
    sp = raw.index(b" ", i); klen = int(raw[i:sp]); i = sp + 1
    key = raw[i:i + klen].decode(); i += klen
    ev = fields(raw[i:i + size]); i += size
    seen[fields(ev[4])[4].decode()] = (ev[5].decode(), key)
for mid, want in expected.items():
    if seen.get(mid) != want:
        failures.append("event %s: Kafka has %r, jsonb prints %r" % (mid, seen.get(mid), want))
print("%d events compared" % len(expected))
for f in failures:
    print(f)
sys.exit(1 if failures or not expected else 0)
PY
tap $? "a batch read from its text, and one that needs jsonb, give each event's data_json as jsonb prints it, and its key" \
	"$(cat "$EVC_RUN/tmp/bt.out")"
head -1 "$EVC_RUN/tmp/bt.out" | sed 's/^/# /'

[ $fails -eq 0 ]
