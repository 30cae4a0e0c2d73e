#!/usr/bin/env python3
"""The validator against Python's jsonschema (draft-07), on generated
schemas and instances.  Prints TAP: one line per batch of cases; every
disagreement is printed with its schema and instance.

    differential.py VALIDATE_CASES_BINARY [--cases N] [--seed S]

Every disagreement is a bug in one of the two.  The generator stays out of
the places where the two are known to differ on purpose, each listed in
test/fuzz/README.md ("The differential check"):
  - formats: jsonschema checks a format only when an optional library is
    installed, and then with that library's rules; only date, ipv4 and
    ipv6 (checked by the standard library) are generated;
  - numbers: jsonschema reads them as binary floats, evcollector as exact
    decimals, so multipleOf is generated with divisors and values that are
    exact in binary; integers past 2**53 come only with integer divisors;
  - regexes: Python's re is not ECMA-262 ("$" matches before a final
    newline, "\\d" matches any Unicode digit), so patterns come from a set
    that means the same in both, and strings have no newline.
"""
import json
import random
import subprocess
import sys

import jsonschema

CHARS = ["a", "b", "c", "é", "😀", "1", " ", "-", "_", "x"]
PATTERNS = ["^a", "b$", "^[a-c]+$", "[0-9]", "^.{2,3}$", "x|y", "^$", "a*b", "^(ab)+$", "[^a]"]
FORMATS = ["date", "ipv4", "ipv6"]
FORMAT_VALUES = ["2026-12-01", "2026-02-30", "1.2.3.4", "256.1.1.1", "::1", "1:2:3:4:5:6:7:8",
                 "1::2::3", "x", "2026-1-01"]
DIVISORS = [2, 3, 0.5, 0.25, 1.5, 7, 1]
BIG_DIVISORS = [2, 3, 7, 1, 10 ** 20, 3 * 10 ** 15]
NUMBERS = [0, 1, -1, 2, 3, 4.5, 0.25, 10, 100, -7, 1.0, 2.5, 6, 21, 1e6]
# Integers past 2**53 are exact in both (Python's int), but jsonschema divides
# them by a fractional multipleOf in binary floating point, and calls 10**20 a
# multiple of 1.5: a case has big integers or fractional divisors, not both.
BIG = [2 ** 64, -2 ** 63, 10 ** 20, 10 ** 20 + 1, 3 * 10 ** 30, 0, 7, -1]
NAMES = ["a", "b", "c", "foo", "é"]


class Gen:
    def __init__(self, rnd):
        self.r = rnd
        self.big = False

    def new_case(self):
        self.big = self.r.random() < 0.2

    def number(self):
        return self.r.choice(BIG if self.big else NUMBERS)

    def string(self):
        if self.r.random() < 0.2:
            return self.r.choice(FORMAT_VALUES)
        return "".join(self.r.choice(CHARS) for _ in range(self.r.randint(0, 5)))

    def value(self, depth=0):
        r = self.r
        k = r.randint(0, 7 if depth < 3 else 4)
        if k == 0:
            return None
        if k == 1:
            return r.choice([True, False])
        if k in (2, 3):
            return self.number()
        if k == 4:
            return self.string()
        if k in (5, 6):
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        return {r.choice(NAMES): self.value(depth + 1) for _ in range(r.randint(0, 4))}

    def schema(self, depth=0, refs=False):
        """refs: a $ref may appear here; only below a keyword that moves
        into the instance (items, properties, ...), so that no $ref comes
        back to itself on the same value, which both refuse or never end."""
        r = self.r
        if r.random() < 0.08:
            return r.choice([True, False])
        s = {}
        for _ in range(r.randint(0, 3 if depth < 3 else 1)):
            self.keyword(s, depth, refs)
        if depth == 0 and "$ref" in json.dumps(s):
            s["definitions"] = {"d": self.schema(2)}
        return s

    def keyword(self, s, depth, refs):
        r = self.r
        sub = lambda: self.schema(depth + 1, refs)
        down = lambda: self.schema(depth + 1, depth == 0 or refs)
        kw = r.choice([
            "type", "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
            "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "format",
            "items", "itemsList", "additionalItems", "contains", "minItems", "maxItems",
            "uniqueItems", "properties", "patternProperties", "additionalProperties", "required",
            "dependencies", "propertyNames", "minProperties", "maxProperties", "allOf", "anyOf",
            "oneOf", "not", "if", "ref"])
        types = ["null", "boolean", "object", "array", "number", "string", "integer"]
        if kw == "type":
            s["type"] = r.choice(types) if r.random() < 0.6 else r.sample(types, r.randint(1, 3))
        elif kw == "enum":
            s["enum"] = [self.value(2) for _ in range(r.randint(1, 3))]
        elif kw == "const":
            s["const"] = self.value(2)
        elif kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            s[kw] = self.number()
        elif kw == "multipleOf":
            s[kw] = r.choice(BIG_DIVISORS if self.big else DIVISORS)
        elif kw in ("minLength", "maxLength", "minItems", "maxItems", "minProperties",
                    "maxProperties"):
            s[kw] = r.randint(0, 3)
        elif kw == "pattern":
            s[kw] = r.choice(PATTERNS)
        elif kw == "format":
            s[kw] = r.choice(FORMATS)
        elif kw == "items":
            s["items"] = down()
        elif kw == "itemsList":
            s["items"] = [down() for _ in range(r.randint(0, 3))]
        elif kw in ("additionalItems", "contains", "additionalProperties", "propertyNames"):
            s[kw] = down()
        elif kw == "not":
            s[kw] = sub()
        elif kw == "uniqueItems":
            s[kw] = r.choice([True, False])
        elif kw == "properties":
            s[kw] = {r.choice(NAMES): down() for _ in range(r.randint(0, 3))}
        elif kw == "patternProperties":
            s[kw] = {r.choice(PATTERNS): down() for _ in range(r.randint(1, 2))}
        elif kw == "required":
            s[kw] = sorted(set(r.choice(NAMES) for _ in range(r.randint(0, 3))))
        elif kw == "dependencies":
            s[kw] = {r.choice(NAMES): (sub() if r.random() < 0.5 else
                                       sorted(set(r.choice(NAMES) for _ in range(r.randint(0, 2)))))
                     for _ in range(r.randint(1, 2))}
        elif kw in ("allOf", "anyOf", "oneOf"):
            s[kw] = [sub() for _ in range(r.randint(1, 3))]
        elif kw == "if":
            s["if"] = sub()
            if r.random() < 0.7:
                s["then"] = sub()
            if r.random() < 0.7:
                s["else"] = sub()
        elif kw == "ref" and refs:
            s["$ref"] = r.choice(["#", "#/definitions/d"])

    def instance(self, schema):
        # values the schema itself mentions are the interesting ones
        r = self.r
        if r.random() < 0.3:
            found = []

            def walk(v):
                if isinstance(v, dict):
                    for k, e in v.items():
                        if k in ("enum", "const"):
                            found.extend(e if (k == "enum" and isinstance(e, list)) else [e])
                        walk(e)
                elif isinstance(v, list):
                    for e in v:
                        walk(e)
            walk(schema)
            if found:
                return r.choice(found)
        return self.value()


def reference(schema, instance):
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return "error"
    v = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    try:
        return "valid" if v.is_valid(instance) else "invalid"
    except RecursionError:
        # a $ref that comes back to itself without consuming the instance:
        # evcollector refuses such a schema when it compiles it (EVS03)
        return "error"
    except TypeError:
        # jsonschema 4.26's additionalItems takes len() of a boolean
        # "items" (README.md, "The differential check"): a bug of the
        # reference, so the case decides nothing
        return "reference failed"


def main():
    binary = sys.argv[1]
    cases = 3000
    seed = 18
    args = sys.argv[2:]
    while args:
        if args[0] == "--cases":
            cases = int(args[1])
        elif args[0] == "--seed":
            seed = int(args[1])
        args = args[2:]
    gen = Gen(random.Random(seed))
    pairs = []
    for _ in range(cases):
        gen.new_case()
        s = gen.schema()
        pairs.append((s, gen.instance(s)))
    text = "".join(json.dumps(s) + "\t" + json.dumps(i) + "\n" for s, i in pairs)
    out = subprocess.run([binary], input=text.encode(), capture_output=True, check=False)
    if out.returncode != 0:
        print("not ok 1 - the validator ran all %d cases" % cases)
        sys.stderr.write(out.stderr.decode(errors="replace")[-3000:])
        return 1
    ours = out.stdout.decode().splitlines()
    bad = []
    skipped = 0
    for (s, i), o in zip(pairs, ours):
        ref = reference(s, i)
        mine = "error" if o.startswith("error") else o
        if ref == "reference failed":
            skipped += 1
        elif ref != mine:
            bad.append((s, i, ref, o))
    if len(ours) != cases:
        print("not ok 1 - the validator answered %d of %d cases" % (len(ours), cases))
        return 1
    print("%s 1 - the validator and Python's jsonschema agree on %d generated cases (seed %d)"
          % ("not ok" if bad else "ok", cases - skipped, seed))
    if skipped:
        print("# %d cases skipped: jsonschema itself failed on them" % skipped)
    for s, i, ref, o in bad[:10]:
        print("# schema %s instance %s: jsonschema %s, evcollector %s"
              % (json.dumps(s), json.dumps(i), ref, o))
    if bad:
        print("# %d disagreements" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
