"""test/gateway/registry_client.py: the gateway's schema-registry routes as
real clients use them.  Prints TAP.

confluent-kafka's SchemaRegistryClient registers, looks up and fetches JSON
schemas, sets and reads compatibility levels, and its JSONSerializer and
JSONDeserializer make a round trip through the registry (the deserializer
from a fresh client, so it fetches the schema by its global id).  Python's
requests checks what a client library hides: content types and error
bodies.

    EVC_GW_URL        the gateway (required)
    EVC_GW_ADMIN_KEY  an admin key of EVC_GW_CLIENT, sent as Basic; empty
                      when the gateway runs with gateway_auth = off
    EVC_GW_CLIENT     the key's client (default: a fresh one)
"""
import json
import os
import struct
import sys
import time

import requests
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

URL = os.environ["EVC_GW_URL"]
KEY = os.environ.get("EVC_GW_ADMIN_KEY", "")
CLIENT = os.environ.get("EVC_GW_CLIENT") or "gwpy%d" % (int(time.time() * 1000) % 10**9)
SR = "application/vnd.schemaregistry.v1+json"

n = 0
fails = 0


def tap(ok, desc, diag=""):
    global n, fails
    n += 1
    print(("ok %d - %s" if ok else "not ok %d - %s") % (n, desc))
    if not ok:
        fails += 1
        for line in str(diag).splitlines()[:20]:
            print("# " + line)


def registry_client():
    conf = {"url": URL}
    if KEY:
        conf["basic.auth.user.info"] = "%s:%s" % (CLIENT, KEY)
    return SchemaRegistryClient(conf)


def raises(fn, status, code):
    """Whether fn raises SchemaRegistryError with this status and error code."""
    try:
        fn()
    except SchemaRegistryError as e:
        return e.http_status_code == status and e.error_code == code, e
    return False, "no error"


ORDER = {"type": "object", "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
         "required": ["id"]}
ORDER_V2 = {"type": "object", "properties": {"id": {"type": "integer"}, "item": {"type": "string"},
                                             "qty": {"type": "integer", "minimum": 1}},
            "required": ["id"]}
BREAKING = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}


def main():
    sr = registry_client()
    subject = "%s.order-value" % CLIENT
    schema = Schema(json.dumps(ORDER), "JSON")

    sid = sr.register_schema(subject, schema)
    tap(isinstance(sid, int) and sid > 0, "register_schema answers a global id", sid)
    fresh = registry_client()
    tap(fresh.register_schema(subject, schema) == sid, "registering it again (uncached) answers the same id")
    tap(subject in sr.get_subjects(), "get_subjects lists the subject")
    tap(sr.get_versions(subject) == [1], "get_versions")

    got = registry_client().get_schema(sid)
    tap(got.schema_type == "JSON" and json.loads(got.schema_str) == ORDER,
        "get_schema by id answers the JSON schema", got)
    reg = fresh.lookup_schema(subject, Schema(json.dumps(ORDER, sort_keys=True), "JSON"))
    tap(reg.schema_id == sid and reg.version == 1 and reg.subject == subject, "lookup_schema", reg)
    latest = registry_client().get_latest_version(subject)
    tap(latest.version == 1 and latest.schema_id == sid and json.loads(latest.schema.schema_str) == ORDER,
        "get_latest_version", latest)
    tap(registry_client().get_version(subject, 1).schema_id == sid, "get_version")

    ok, e = raises(lambda: registry_client().get_version(subject, 5), 404, 40402)
    tap(ok, "an unknown version raises 40402", e)
    ok, e = raises(lambda: registry_client().get_versions(CLIENT + ".none-value"), 404, 40401)
    tap(ok, "an unknown subject raises 40401", e)
    ok, e = raises(lambda: registry_client().get_schema(987654321), 404, 40403)
    tap(ok, "an unknown id raises 40403", e)
    ok, e = raises(lambda: fresh.lookup_schema(subject, Schema(json.dumps(ORDER_V2), "JSON")), 404, 40403)
    tap(ok, "looking up a schema no version has raises 40403", e)
    ok, e = raises(lambda: sr.register_schema(subject, Schema('{"type": 7}', "JSON")), 422, 42201)
    tap(ok, "an invalid schema raises 42201", e)

    tap(sr.test_compatibility(subject, Schema(json.dumps(ORDER_V2), "JSON")) is True,
        "test_compatibility: an optional property is compatible")
    tap(sr.test_compatibility(subject, Schema(json.dumps(BREAKING), "JSON")) is False,
        "test_compatibility: a changed type is not")
    ok, e = raises(lambda: sr.register_schema(subject, Schema(json.dumps(BREAKING), "JSON")), 409, 409)
    tap(ok, "registering it raises 409", e)

    ok, e = raises(lambda: sr.get_compatibility(subject), 404, 40408)
    tap(ok, "get_compatibility of a subject without a level raises 40408", e)
    # The client returns the answer as it came: {"compatibility": "FULL"}.
    answer = sr.set_compatibility(subject, "FULL")
    tap(answer == {"compatibility": "FULL"} or answer == "FULL", "set_compatibility(subject, FULL)", answer)
    tap(sr.get_compatibility(subject) == "FULL", "get_compatibility(subject)")
    tap(sr.get_compatibility() in ("BACKWARD", "NONE", "FORWARD", "FULL", "BACKWARD_TRANSITIVE",
                                   "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"), "get_compatibility() (global)")
    sid2 = sr.register_schema(subject, Schema(json.dumps(ORDER_V2), "JSON"))
    tap(sid2 != sid and sr.get_versions(subject) == [1, 2], "version 2 under FULL gets its own id")

    # The serializer registers (auto.register.schemas) and frames the id.
    topic = "%s.order" % CLIENT
    ctx = SerializationContext(topic, MessageField.VALUE)
    ser = JSONSerializer(json.dumps(ORDER_V2), registry_client())
    event = {"id": 42, "item": "apple", "qty": 3}
    data = ser(event, ctx)
    magic, framed_id = struct.unpack(">bI", data[:5])
    tap(magic == 0 and framed_id == sid2, "JSONSerializer frames the registered id", (magic, framed_id, sid2))
    de = JSONDeserializer(None, schema_registry_client=registry_client())
    tap(de(data, ctx) == event, "JSONDeserializer reads it back, fetching the schema by id")

    # use.latest.version: the serializer asks for the latest version.
    ser_latest = JSONSerializer(json.dumps(ORDER_V2), registry_client(),
                                conf={"auto.register.schemas": False, "use.latest.version": True})
    data = ser_latest({"id": 7}, ctx)
    tap(struct.unpack(">bI", data[:5])[1] == sid2, "JSONSerializer with use.latest.version")

    # A new subject registered by the serializer itself.
    ctx2 = SerializationContext("%s.refund" % CLIENT, MessageField.VALUE)
    data = JSONSerializer(json.dumps(ORDER), registry_client())({"id": 1}, ctx2)
    tap(struct.unpack(">bI", data[:5])[1] == registry_client().get_latest_version("%s.refund-value" % CLIENT).schema_id,
        "JSONSerializer registers a new subject")

    # What requests sees.
    auth = (CLIENT, KEY) if KEY else None
    r = requests.get(URL + "/subjects/%s/versions/latest" % subject, auth=auth, timeout=10)
    tap(r.status_code == 200 and r.headers["Content-Type"].startswith(SR) and r.json()["version"] == 2,
        "requests: GET latest is %s" % SR, (r.status_code, r.headers, r.text))
    r = requests.post(URL + "/subjects/%s/versions" % subject, auth=auth, data=b"\xff\xfe",
                      headers={"Content-Type": SR}, timeout=10)
    tap(r.status_code == 400 and set(r.json()) == {"error_code", "message"},
        "requests: a body that is not UTF-8 answers 400 {error_code, message}", (r.status_code, r.text))
    r = requests.get(URL + "/%s/list_events" % CLIENT, auth=auth, timeout=10)
    tap(r.status_code == 200 and {e["event"] for e in r.json()["events"]} == {"order", "refund"},
        "requests: list_events shows what the Confluent routes registered", r.text)
    r = requests.get(URL + "/%s/order/schema" % CLIENT, auth=auth, timeout=10)
    tap(r.status_code == 200 and r.json() == ORDER_V2, "requests: /schema is the latest version", r.text)

    print("1..%d" % n)
    return 0 if fails == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a client error is a failure, counted and shown
        import traceback
        tap(False, "the client flow ran to its end", traceback.format_exc())
        print("1..%d" % n)
        sys.exit(1)
