#!/usr/bin/env python3
"""Independent S3 clients for test/minio: MinIO's Python client and boto3.

Run with the venv of evc_pyclients_install ($EVC_PY).  Credentials come
from EVC_MINIO_ENDPOINT, EVC_MINIO_KEY, EVC_MINIO_SECRET, EVC_MINIO_BUCKET
and EVC_MINIO_REGION.  Prints one line per check, "PASS <what>" or
"FAIL <what>: <why>"; the caller turns them into TAP.  Exit code 0 when all
passed.

  pycheck.py check CLIENT PREFIX EXPECTED.json
      CLIENT is minio or boto3.  EXPECTED maps key -> sha256 of the body.
      Lists PREFIX recursively: the listed names are exactly the expected
      keys; then reads each object back by its listed name and compares.
  pycheck.py put CLIENT KEY FILE
      Uploads FILE as KEY (for the reverse direction: client writes, curl reads).
  pycheck.py badsecret CLIENT
      Lists the bucket with a wrong secret: must fail with 403 and an S3
      error code SignatureDoesNotMatch or InvalidAccessKeyId.
"""
import hashlib
import json
import os
import sys
from urllib.parse import urlparse

ENDPOINT = os.environ["EVC_MINIO_ENDPOINT"]
KEY = os.environ["EVC_MINIO_KEY"]
SECRET = os.environ["EVC_MINIO_SECRET"]
BUCKET = os.environ["EVC_MINIO_BUCKET"]
REGION = os.environ.get("EVC_MINIO_REGION", "us-east-1")
REFUSALS = ("SignatureDoesNotMatch", "InvalidAccessKeyId")

failed = 0


def report(ok, what, why=""):
    global failed
    if ok:
        print(f"PASS {what}")
    else:
        failed += 1
        print(f"FAIL {what}: {why}")
    sys.stdout.flush()


class MinioClient:
    name = "minio-py"

    def __init__(self, secret=SECRET):
        import minio

        u = urlparse(ENDPOINT)
        self.c = minio.Minio(u.netloc, access_key=KEY, secret_key=secret,
                             secure=u.scheme == "https", region=REGION)

    def list(self, prefix):
        return [o.object_name for o in self.c.list_objects(BUCKET, prefix=prefix, recursive=True)]

    def get(self, key):
        r = self.c.get_object(BUCKET, key)
        try:
            return r.read()
        finally:
            r.close()
            r.release_conn()

    def put(self, key, path):
        self.c.fput_object(BUCKET, key, path)

    def refusal(self):
        from minio.error import S3Error

        try:
            self.list("")
        except S3Error as e:
            return e.response.status, e.code
        return None, "listing succeeded"


class Boto3Client:
    name = "boto3"

    def __init__(self, secret=SECRET):
        import boto3
        from botocore.config import Config

        self.c = boto3.client(
            "s3", endpoint_url=ENDPOINT, aws_access_key_id=KEY,
            aws_secret_access_key=secret, region_name=REGION,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 1}))

    def list(self, prefix):
        names = []
        for page in self.c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            names += [o["Key"] for o in page.get("Contents", [])]
        return names

    def get(self, key):
        return self.c.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def put(self, key, path):
        with open(path, "rb") as f:
            self.c.put_object(Bucket=BUCKET, Key=key, Body=f.read())

    def refusal(self):
        from botocore.exceptions import ClientError

        try:
            self.list("")
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
        return None, "listing succeeded"


CLIENTS = {"minio": MinioClient, "boto3": Boto3Client}


def main(argv):
    cmd, client = argv[1], argv[2]
    cls = CLIENTS[client]
    if cmd == "check":
        prefix, expected_path = argv[3], argv[4]
        with open(expected_path, encoding="utf-8") as f:
            expected = json.load(f)
        c = cls()
        try:
            listed = c.list(prefix)
        except Exception as e:  # noqa: BLE001 - report whatever the client raised
            report(False, f"{c.name} lists {prefix!r}", repr(e))
            return
        missing = sorted(set(expected) - set(listed))
        extra = sorted(set(listed) - set(expected))
        report(not missing and not extra and len(listed) == len(expected),
               f"{c.name} lists the {len(expected)} keys under {prefix!r} by their exact names",
               f"missing {missing!r}, unexpected {extra!r}")
        for key in listed:
            if key not in expected:
                continue
            try:
                body = c.get(key)
            except Exception as e:  # noqa: BLE001
                report(False, f"{c.name} reads {key!r} by its listed name", repr(e))
                continue
            digest = hashlib.sha256(body).hexdigest()
            report(digest == expected[key], f"{c.name} reads {key!r} by its listed name",
                   f"sha256 {digest}, expected {expected[key]}")
    elif cmd == "put":
        key, path = argv[3], argv[4]
        c = cls()
        try:
            c.put(key, path)
            report(True, f"{c.name} puts {key!r}")
        except Exception as e:  # noqa: BLE001
            report(False, f"{c.name} puts {key!r}", repr(e))
    elif cmd == "badsecret":
        c = cls(secret=SECRET + "-wrong")
        status, code = c.refusal()
        report(status == 403 and code in REFUSALS,
               f"{c.name} with a wrong secret is refused: {status} {code}",
               f"got {status} {code}")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
    sys.exit(1 if failed else 0)
