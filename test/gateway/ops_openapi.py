"""test/gateway/ops_openapi.py: the OpenAPI document against the server.

For every operation of src/gateway/openapi.json, send one plausible
request (path parameters filled in, a body made from the request schema)
and check that the server has the route (not the dispatcher's "no route"
404), answers a status the operation documents, and, for a documented
body, with one of the documented content types.  Prints one line per check:
"PASS<TAB>what" or "FAIL<TAB>what<TAB>why" (test/gateway/ops.sh makes TAP
of them).

    EVC_GW_URL, EVC_GW_ADMIN_KEY, EVC_GW_CLIENT as for ops.sh
"""
import json
import os
import sys
import time

import requests

URL = os.environ["EVC_GW_URL"]
KEY = os.environ.get("EVC_GW_ADMIN_KEY", "")
CLIENT = os.environ.get("EVC_GW_CLIENT") or "gwoa%d" % (int(time.time() * 1000) % 10**9)
EVENT = "probe"
PARAMS = {"client": CLIENT, "event": EVENT, "subject": "%s.%s-value" % (CLIENT, EVENT),
          "version": "1", "id": "1"}


def report(ok, what, why=""):
    why = " ".join(str(why).split())[:400]
    print("PASS\t%s" % what if ok else "FAIL\t%s\t%s" % (what, why), flush=True)


def resolve(doc, schema):
    while isinstance(schema, dict) and "$ref" in schema:
        node = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def example(doc, schema, name=""):
    """A small value valid under schema (as far as the document says)."""
    schema = resolve(doc, schema)
    if not isinstance(schema, dict) or not schema:
        return {"type": "object"} if name == "" else "x"
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "oneOf" in schema:
        return example(doc, schema["oneOf"][0], name)
    t = schema.get("type")
    if t == "object":
        return {k: example(doc, v, k) for k, v in schema.get("properties", {}).items()
                if k in schema.get("required", []) or k in ("data", "context")}
    if t == "array":
        return [] if schema.get("maxItems") == 0 else [example(doc, schema.get("items", {}))]
    if t == "integer" or t == "number":
        return 1
    if t == "boolean":
        return False
    if name == "schema":
        return json.dumps({"type": "object"})
    if name in ("event", "event_name"):
        return EVENT
    return "x"


def check(doc, path, method, op):
    url = URL + path
    for p in op.get("parameters", []):
        if p["in"] == "path":
            url = url.replace("{%s}" % p["name"], PARAMS[p["name"]])
    headers = {"Authorization": "Bearer " + KEY} if KEY else {}
    body = None
    if "requestBody" in op:
        ctype, media = next(iter(op["requestBody"]["content"].items()))
        headers["Content-Type"] = ctype
        body = json.dumps(example(doc, media.get("schema", {})))
    what = "%s %s" % (method.upper(), path)
    r = requests.request(method.upper(), url, data=body, headers=headers, timeout=30)
    try:
        answer = r.json()
    except ValueError:
        answer = None
    no_route = (r.status_code == 404 and isinstance(answer, dict)
                and answer.get("error", {}).get("code") == "not_found")
    report(not no_route, "%s: the server has the route" % what, r.text)
    documented = op["responses"]
    report(str(r.status_code) in documented, "%s: answers a documented status (%d)" % (what, r.status_code),
           "documented %s; got %s" % (sorted(documented), r.text))
    content = documented.get(str(r.status_code), {}).get("content")
    if content:
        got = r.headers.get("Content-Type", "").split(";")[0].strip()
        report(got in content, "%s: with a documented content type" % what,
               "documented %s; got %s" % (sorted(content), got))


def main():
    doc = json.load(open(sys.argv[1]))
    report(doc.get("openapi", "").startswith("3.1"), "the document is OpenAPI 3.1", doc.get("openapi"))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            check(doc, path, method, op)


main()
