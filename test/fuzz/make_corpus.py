#!/usr/bin/env python3
"""Writes the seed corpora of test/fuzz/corpus/ (committed; run again only
to regenerate them).  Sources: the JSON-Schema-Test-Suite (Debian's
json-schema-test-suite), protobuf messages encoded by protoc from
proto/evcollector.proto, and tiny images built here byte by byte.

    test/fuzz/make_corpus.py            # from the repository root
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

SUITE = "/usr/share/json-schema-test-suite/tests/draft7"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test/fuzz/corpus")
N_SCHEMAS = 8   # fuzz_validate_instance.c's fixed schemas


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def suite_groups():
    for fn in sorted(os.listdir(SUITE)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(SUITE, fn)) as f:
            for group in json.load(f):
                yield fn, group


def schemas_and_instances():
    schemas, instances = [], []
    for _, g in suite_groups():
        schemas.append(json.dumps(g["schema"]))
        for t in g["tests"]:
            instances.append(json.dumps(t["data"]))
    return schemas, instances


def json_corpora():
    schemas, instances = schemas_and_instances()
    for s in schemas:
        put("schema_compile", s)
    for i, inst in enumerate(instances):
        put("validate_instance", bytes([i % N_SCHEMAS]) + inst.encode())
        put("json_text", inst)
    # what the text reader must leave to jsonb_in
    for t in ['"\\u0000"', '"\\ud800"', '"\\udc00\\ud800"', '1e99999', '-0', '0.10',
              '[' * 1100 + ']' * 1100, '{"a":1,"a":2}', ' {"b" : [ 1 , 2 ] } ', 'tru', '"\\x"',
              '12345678901234567890123', '1.0000000000000000001', '"\xc3\x28"', '{"\\u00e9":1}']:
        put("json_text", t)
    # compat: each suite schema against itself, against true, and against
    # its neighbour
    for a, b in zip(schemas, schemas[1:] + schemas[:1]):
        put("schema_compat", a.encode() + b"\xff" + a.encode())
        put("schema_compat", a.encode() + b"\xff" + b.encode())
    pairs = [
        ({"type": "integer", "minimum": 0}, {"type": "number"}),
        ({"enum": ["a", "b"]}, {"type": "string", "maxLength": 1}),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
         {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}),
        ({"type": "object", "additionalProperties": False, "properties": {"a": {}}},
         {"type": "object", "properties": {"a": {"type": "number"}}}),
        ({"multipleOf": 4}, {"multipleOf": 2}),
        ({"type": "array", "items": {"type": "integer"}, "maxItems": 3},
         {"type": "array", "items": [{"type": "number"}], "additionalItems": {"minimum": 0}}),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, {"type": ["string", "null"]}),
        ({"$ref": "#/definitions/a", "definitions": {"a": {"const": 1}}}, {"enum": [1, 2]}),
        ({"pattern": "^a+$"}, {"pattern": "^a*$"}),
        ({"exclusiveMaximum": 10}, {"maximum": 10}),
    ]
    for a, b in pairs:
        put("schema_compat", json.dumps(a).encode() + b"\xff" + json.dumps(b).encode())
        put("schema_compat", json.dumps(b).encode() + b"\xff" + json.dumps(a).encode())


def protoc_encode(message, text):
    proto = os.path.join(ROOT, "proto")
    return subprocess.run(["protoc", "--proto_path=" + proto, "--encode=evcollector." + message,
                           "evcollector.proto"], input=text.encode(), capture_output=True,
                          check=True, cwd=proto).stdout


EVENTS = [
    'client: "SpongeBob" event_name: "Fruits" schema_version: 1 '
    'context { sent_at: "2026-12-01T10:00:00.000000Z" received_at: "2026-12-01T10:00:00.100000Z" '
    'message_id: "0b6b8f3e-5d0c-4b8e-9a57-0c1f3f2a9d11" user_agent: "psql" } '
    'data_json: "{\\"fruit\\": \\"apple\\", \\"quantity\\": 3}"',
    'client: "SpongeBob" event_name: "image" '
    'context { sent_at: "2026-12-01T10:00:00Z" processed_at: "2026-12-01T10:00:01.5Z" '
    'message_id: "9e1b2c3d-0000-4000-8000-00000000beef" } '
    'data_json: "{\\"width\\": 1, \\"height\\": 1}" blob: "\\x89PNG\\r\\n\\x1a\\n" '
    'blob_content_type: "image/png"',
    'client: "c" event_name: "e" context { message_id: "not-a-uuid" } data_json: "[1]"',
    'client: "c" event_name: "e" schema_version: -5 context { sent_at: "yesterday" '
    'message_id: "0b6b8f3e-5d0c-4b8e-9a57-0c1f3f2a9d11" } data_json: "{}"',
]
OTHERS = {
    "EventContext": ['sent_at: "2026-12-01T10:00:00Z" message_id: "x" user_agent: "curl/8"'],
    "SchemaRecord": ['client: "SpongeBob" event_name: "Fruits" version: 2 '
                     'schema_json: "{\\"type\\": \\"object\\"}" topic: "SpongeBob.Fruits" '
                     'created_at: "2026-12-01T10:00:00Z" created_by: "admin"'],
    "AggregatedEvent": ['client: "SpongeBob" event_name: "Fruits" function: "sum" group_key: "apple" '
                        'window_start: "2026-12-01T10:00:00Z" window_seconds: 60 value: 12.5 '
                        'value_decimal: "12.5" count: 4 revision: 2 computed_at: "2026-12-01T10:01:00Z" '
                        'window_name: "1m"'],
    "WorkerMetrics": ['kind: "relay" name: "relay" pid: 4242 produced: 10 delivered: 9 failed: 1 '
                      'latency_le_ms: [1, 5, 10] latency_count: [3, 4, 2] latency_sum_ms: 21.5 '
                      'last_error: "broker down"'],
    "PartitionLag": ['consumer: "archive" topic: "SpongeBob.Fruits" partition: 2 next_offset: 100 '
                     'high_watermark: 120 lag: 20'],
    "Metrics": ['source: "pg1" taken_at: "2026-12-01T10:00:00Z" sent: 7 '
                'workers { kind: "consumer" name: "table" consumed: 5 } '
                'lag { consumer: "table" topic: "t" partition: 0 lag: 3 } outbox_pending: 2'],
}
TYPES = ["Event", "EventContext", "SchemaRecord", "AggregatedEvent", "WorkerMetrics",
         "PartitionLag", "Metrics"]   # fuzz_proto_decode.c's modes 0-6


def proto_corpora():
    events = [protoc_encode("Event", t) for t in EVENTS]
    for mode, name in enumerate(TYPES):
        for text in (EVENTS if name == "Event" else OTHERS[name]):
            put("proto_decode", bytes([mode]) + protoc_encode(name, text))
    for ev in events:
        put("proto_decode", bytes([7]) + ev)
        put("proto_decode", bytes([8]) + ev)
        # an older relay's stamp: a second context appended
        put("proto_decode", bytes([8]) + ev + protoc_encode("Event", 'context { processed_at: "x" }'))
        for sink in range(4):
            put("sink_decode", bytes([sink]) + ev)
    put("sink_decode", b"\x00garbage")


def png(w, h):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    raw = b"".join(b"\x00" + b"\x00\x00\x00" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gif(w, h):
    return (b"GIF89a" + struct.pack("<HH", w, h) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff" +
            b"\x2c\x00\x00\x00\x00" + struct.pack("<HH", w, h) + b"\x00\x02\x02\x44\x01\x00\x3b")


def jpeg(w, h):
    # SOI, an APP0 (JFIF) segment, then a baseline SOF0 with the size
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\x08" + struct.pack(">HH", h, w) + b"\x01\x01\x11\x00"
    return (b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 +
            b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9")


def webp(kind, w, h):
    if kind == b"VP8 ":
        body = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", w, h) + b"\x00" * 8
    elif kind == b"VP8L":
        b = (w - 1) | ((h - 1) << 14)
        body = b"\x2f" + struct.pack("<I", b) + b"\x00" * 4
    else:
        body = b"\x00\x00\x00\x00" + struct.pack("<I", w - 1)[:3] + struct.pack("<I", h - 1)[:3]
    chunk = kind + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def image_corpora():
    for w, h in ((1, 1), (3, 2)):
        put("image_sniff", png(w, h))
        put("image_sniff", gif(w, h))
        put("image_sniff", jpeg(w, h))
        for kind in (b"VP8 ", b"VP8L", b"VP8X"):
            put("image_sniff", webp(kind, w, h))
    put("image_sniff", b"not an image")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    json_corpora()
    proto_corpora()
    image_corpora()
    for d in sorted(os.listdir(OUT)):
        print(d, len(os.listdir(os.path.join(OUT, d))), file=sys.stderr)


if __name__ == "__main__":
    main()
