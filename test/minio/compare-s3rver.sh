#!/usr/bin/env bash
# test/minio/compare-s3rver.sh: the same probes against s3rver (test/lib.sh's
# evc_s3_start) and MinIO, side by side.  Informational, not a test: it
# prints what each server answered, for test/minio/README.md.
set -u
D=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$D/../lib.sh"
source "$D/minio.sh"
evc_require_root "$0" "$@"

urlkey() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/~"))' "$1"; }
s3code() { sed -n 's:.*<Code>\([^<]*\)</Code>.*:\1:p' "$1"; }
KEYS=("cmp/plus+sign.txt" "cmp/with space.txt" "cmp/ünïcødé-日本語.bin" "cmp/é+ü ✓.dat")

# probe NAME ENDPOINT KEY SECRET BUCKET
probe() {
	local name=$1 ep=$2 key=$3 secret=$4 bucket=$5 w k code i=0
	w="$EVC_RUN/cmp-$name"
	mkdir -p "$w"
	echo "x" >"$w/body"
	# the payload hash, signed, as the extension sends it (curl 7.88 does not)
	local h="x-amz-content-sha256: $(sha256sum "$w/body" | cut -d' ' -f1)"
	local ok=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" -H "$h")
	local bad=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret-wrong" -H "$h")
	code=$(curl -s -o "$w/o" -w '%{http_code}' "${bad[@]}" -T "$w/body" "$ep/$bucket/cmp/bad-secret")
	echo "$name | PUT, wrong secret | $code $(s3code "$w/o")"
	code=$(curl -s -o "$w/o" -w '%{http_code}' "$ep/$bucket/cmp/bad-secret")
	echo "$name | GET unsigned, of that key | $code $(s3code "$w/o")"
	code=$(curl -s -o "$w/o" -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" \
		-H "x-amz-content-sha256: $(printf 'other' | sha256sum | cut -d' ' -f1)" -T "$w/body" "$ep/$bucket/cmp/bad-hash")
	echo "$name | PUT, body not the signed hash | $code $(s3code "$w/o")"
	code=$(curl -s -o "$w/o" -w '%{http_code}' -T "$w/body" "$ep/$bucket/cmp/unsigned")
	echo "$name | PUT unsigned | $code $(s3code "$w/o")"
	code=$(curl -s -o "$w/o" -w '%{http_code}' "${ok[@]}" -T "$w/body" "$ep/$bucket/cmp/raw+plus")
	echo "$name | PUT signed, raw '+' in the URL | $code $(s3code "$w/o")"
	echo '{' >"$w/keys.json"
	for k in "${KEYS[@]}"; do
		i=$((i + 1))
		cp "$w/body" "$w/k$i" # same body, so the same signed hash
		code=$(curl -s -o "$w/o" -w '%{http_code}' "${ok[@]}" -T "$w/k$i" "$ep/$bucket/$(urlkey "$k")")
		echo "$name | curl PUT '$k' encoded | $code"
		[ $i -gt 1 ] && echo ',' >>"$w/keys.json"
		python3 -c 'import json, sys; print(json.dumps(sys.argv[1]) + ": " + json.dumps(sys.argv[2]))' \
			"$k" "$(sha256sum "$w/k$i" | cut -d' ' -f1)" >>"$w/keys.json"
	done
	echo '}' >>"$w/keys.json"
	for c in minio boto3; do
		EVC_MINIO_ENDPOINT=$ep EVC_MINIO_KEY=$key EVC_MINIO_SECRET=$secret EVC_MINIO_BUCKET=$bucket \
			"$EVC_PY" "$D/pycheck.py" check "$c" cmp/ "$w/keys.json" 2>&1 | sed "s/^/$name | /"
		EVC_MINIO_ENDPOINT=$ep EVC_MINIO_KEY=$key EVC_MINIO_SECRET=$secret EVC_MINIO_BUCKET=$bucket \
			"$EVC_PY" "$D/pycheck.py" badsecret "$c" 2>&1 | sed "s/^/$name | /"
	done
}

evc_run_dir
evc_pyclients_install
evc_s3_start
evc_minio_start
probe s3rver "$EVC_S3_ENDPOINT" "$EVC_S3_KEY" "$EVC_S3_SECRET" "$EVC_S3_BUCKET"
probe minio "$EVC_MINIO_ENDPOINT" "$EVC_MINIO_KEY" "$EVC_MINIO_SECRET" "$EVC_MINIO_BUCKET"
