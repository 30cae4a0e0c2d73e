"""test/wire/wire_check.py: checks evcollector's messages on Kafka with
clients that share no code with evcollector or librdkafka.

    wire_check.py kafka --bootstrap HOST:PORT[,...] --topics REGEX [--api-version X.Y.Z]
    wire_check.py bytes --type Event HEX

Each message whose content-type header names a message of the .proto
("application/x-protobuf; proto=evcollector.Event") is read with kafka-python
(every partition of every topic that REGEX matches, from the start to the
end offsets) and checked three ways:

  canonical  a wire-level walk of its bytes: every field at most once (a
             repeated field only in one run), in field-number order, no
             field holding its default value, no overlong varint;
  decode     Google's protobuf for Python decodes it as protoc --decode
             does, field by field;
  encode     protoc --encode of that message gives back the same bytes,
             and so does Python's SerializeToString.

`bytes` checks one payload given in hex, for the suite's own tests of this
checker.  Both print one JSON object a line, with backslashes doubled for
COPY ... FROM PROGRAM: topic, partition, offset, key, type, message_id (the
header), canonical, decode and encode ("" when the check passed, else what
is wrong) and message (the decoded message as JSON).

--proto (default: evcollector.proto beside this file) is compiled with protoc
into --work (default: a temporary directory) for the Python code.
"""
import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from google.protobuf import descriptor as pbd
from google.protobuf import json_format, text_format

CONTENT_TYPE = re.compile(r"^application/x-protobuf; proto=evcollector\.(\w+)$")
HERE = os.path.dirname(os.path.abspath(__file__))


def load_proto(proto, work):
    """Generate the Python code of the .proto with protoc and import it."""
    os.makedirs(work, exist_ok=True)
    subprocess.run(["protoc", "-I", os.path.dirname(proto), "--python_out", work, proto],
                   check=True)
    sys.path.insert(0, work)
    name = os.path.splitext(os.path.basename(proto))[0] + "_pb2"
    return importlib.import_module(name)


# ---------- the wire-level walker ----------

def read_varint(buf, pos):
    start, value, shift = pos, 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint cut short at byte %d" % start)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
        if shift >= 70:
            raise ValueError("varint too long at byte %d" % start)
    if pos - start > 1 and buf[pos - 1] == 0:
        raise ValueError("overlong varint at byte %d" % start)
    return value, pos


def is_default(field, wire_type, raw):
    """A scalar field of implicit presence that holds its default value."""
    if field.label == pbd.FieldDescriptor.LABEL_REPEATED:
        return False
    if field.type == pbd.FieldDescriptor.TYPE_MESSAGE:
        return False
    if getattr(field, "has_presence", False):
        return False
    if wire_type == 2:
        return len(raw) == 0
    if wire_type == 0:
        return raw == 0
    return all(b == 0 for b in raw)


def walk(buf, desc, path=""):
    """Problems with the encoding of buf as a desc message; [] when canonical."""
    problems = []
    pos, last = 0, 0
    seen = set()
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        field = desc.fields_by_number.get(number)
        name = "%s%s (%d)" % (path, field.name if field else "unknown field", number)
        repeated = field is not None and field.label == pbd.FieldDescriptor.LABEL_REPEATED
        if number < last:
            problems.append("%s comes after field %d: fields are not in number order" % (name, last))
        if number in seen and not (repeated and number == last):
            problems.append("%s appears more than once" % name)
        if field is None:
            problems.append("%s is not in the .proto" % name)
        seen.add(number)
        last = max(last, number)
        if wire_type == 0:
            raw, pos = read_varint(buf, pos)
        elif wire_type in (1, 5):
            n = 8 if wire_type == 1 else 4
            raw, pos = buf[pos:pos + n], pos + n
        elif wire_type == 2:
            n, pos = read_varint(buf, pos)
            raw, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError("%s has wire type %d, which no message of ours uses" % (name, wire_type))
        if pos > len(buf):
            raise ValueError("%s runs past the end of the message" % name)
        if field is None:
            continue
        if is_default(field, wire_type, raw):
            problems.append("%s holds its default value, which protoc leaves out" % name)
        if field.type == pbd.FieldDescriptor.TYPE_MESSAGE:
            problems += walk(raw, field.message_type, name + ".")
    return problems


# ---------- decoding and encoding with protoc and with Python ----------

def protoc(mode, full_name, proto, data):
    r = subprocess.run(["protoc", "--%s=%s" % (mode, full_name), "-I", os.path.dirname(proto), proto],
                       input=data, capture_output=True)
    if r.returncode != 0:
        raise ValueError("protoc --%s: %s" % (mode, r.stderr.decode(errors="replace").strip()))
    return r.stdout


def differences(a, b, path=""):
    """The fields where messages a and b differ, field by field."""
    out = []
    for field in a.DESCRIPTOR.fields:
        name = path + field.name
        va, vb = getattr(a, field.name), getattr(b, field.name)
        if field.label == pbd.FieldDescriptor.LABEL_REPEATED:
            if len(va) != len(vb):
                out.append("%s: %d values, protoc %d" % (name, len(va), len(vb)))
                continue
            for i, (x, y) in enumerate(zip(va, vb)):
                if field.type == pbd.FieldDescriptor.TYPE_MESSAGE:
                    out += differences(x, y, "%s[%d]." % (name, i))
                elif x != y:
                    out.append("%s[%d]: %r, protoc %r" % (name, i, x, y))
        elif field.type == pbd.FieldDescriptor.TYPE_MESSAGE:
            if a.HasField(field.name) != b.HasField(field.name):
                out.append("%s: present %s, protoc %s" % (name, a.HasField(field.name), b.HasField(field.name)))
            else:
                out += differences(va, vb, name + ".")
        elif va != vb:
            out.append("%s: %r, protoc %r" % (name, va if len(repr(va)) < 80 else repr(va)[:80] + "...",
                                              vb if len(repr(vb)) < 80 else repr(vb)[:80] + "..."))
    return out


def check(pb2, proto, type_name, payload):
    """The three checks of one payload, and the message as JSON."""
    cls = getattr(pb2, type_name)
    full_name = cls.DESCRIPTOR.full_name
    row = {"type": type_name, "canonical": "", "decode": "", "encode": "", "message": None}
    try:
        row["canonical"] = "; ".join(walk(payload, cls.DESCRIPTOR))
    except ValueError as e:
        row["canonical"] = str(e)
    try:
        msg = cls.FromString(payload)
        row["message"] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
        text = protoc("decode", full_name, proto, payload)
        theirs = text_format.Parse(text.decode("utf-8"), cls())
        row["decode"] = "; ".join(differences(msg, theirs))
        encoded = protoc("encode", full_name, proto, text)
        problems = []
        if encoded != payload:
            problems.append("protoc --encode gives %s, the message on Kafka is %s"
                            % (encoded.hex()[:400], payload.hex()[:400]))
        if msg.SerializeToString() != payload:
            problems.append("Python's SerializeToString differs from the message on Kafka")
        row["encode"] = "; ".join(problems)
    except Exception as e:  # a payload that does not decode fails every check
        row["decode"] = row["decode"] or "%s: %s" % (type(e).__name__, e)
        row["encode"] = row["encode"] or row["decode"]
    return row


def emit(row):
    print(json.dumps(row, ensure_ascii=True).replace("\\", "\\\\"), flush=True)


# ---------- reading Kafka with kafka-python ----------

def read_kafka(args, pb2):
    from kafka import KafkaConsumer, TopicPartition

    opts = dict(bootstrap_servers=args.bootstrap.split(","), group_id=None,
                enable_auto_commit=False, request_timeout_ms=15000)
    # librdkafka 2.0.2's mock cluster answers ApiVersions and Metadata up to
    # v2 only, and answers a newer ApiVersions request with a reply that
    # kafka-python cannot decode, so against it the version is given.
    if args.api_version:
        opts["api_version"] = tuple(int(x) for x in args.api_version.split("."))
    consumer = KafkaConsumer(**opts)
    pattern = re.compile(args.topics)
    topics = sorted(t for t in consumer.topics() if pattern.fullmatch(t))
    parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
    if not parts:
        return 0
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    n = 0
    deadline = time.monotonic() + args.timeout
    while any(consumer.position(tp) < end[tp] for tp in parts):
        if time.monotonic() > deadline:
            raise SystemExit("wire_check.py: timed out reading %s" % ", ".join(topics))
        for tp, records in consumer.poll(timeout_ms=1000).items():
            for m in records:
                if m.offset >= end[tp]:
                    continue
                headers = {k: v.decode("utf-8", "replace") for k, v in (m.headers or [])}
                match = CONTENT_TYPE.match(headers.get("content-type", ""))
                if not match or not hasattr(pb2, match.group(1)):
                    continue
                row = {"topic": m.topic, "partition": m.partition, "offset": m.offset,
                       "key": m.key.decode("utf-8", "replace") if m.key is not None else None,
                       "message_id": headers.get("message_id")}
                row.update(check(pb2, args.proto, match.group(1), m.value))
                emit(row)
                n += 1
    consumer.close()
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proto", default=os.path.join(HERE, "evcollector.proto"))
    ap.add_argument("--work", default=None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kafka")
    k.add_argument("--bootstrap", required=True)
    k.add_argument("--topics", required=True, help="a regular expression for whole topic names")
    k.add_argument("--api-version", default="")
    k.add_argument("--timeout", type=float, default=60)
    b = sub.add_parser("bytes")
    b.add_argument("--type", default="Event")
    b.add_argument("hex")
    args = ap.parse_args()
    args.proto = os.path.abspath(args.proto)
    pb2 = load_proto(args.proto, args.work or tempfile.mkdtemp(prefix="wire_check."))
    if args.cmd == "kafka":
        read_kafka(args, pb2)
    else:
        emit(check(pb2, args.proto, args.type, bytes.fromhex(args.hex)))


if __name__ == "__main__":
    main()
