#!/usr/bin/env bash
# test/minio/concurrency.sh: the S3 backend's concurrent puts
# (evcollector.s3_max_concurrency) against a real, signature-checking MinIO.
# Prints TAP.
#
# Sourced like storage.sh, in a subshell of test/run's minio layer once the
# cluster, the test Kafka and MinIO run; or run on its own as root
# (`bash test/minio/concurrency.sh`), when it starts all three itself.
#
#  - 200 images of 100 kB land with s3_max_concurrency = 8, on more than
#    one connection at once and never more than 8, and boto3 reads every
#    object back to its sha256;
#  - a 4xx in the middle of a concurrent batch (a proxy, refuse_proxy.py,
#    forwards its first PUTs and refuses the rest with 403) fails the whole
#    batch: nothing is indexed or committed, and once the proxy forwards
#    again everything lands, once;
#  - SIGTERM stops a worker whose puts hang on a frozen (SIGSTOPped) MinIO
#    within a second, and nothing is lost;
#  - MinIO SIGKILLed and restarted during a concurrent batch loses nothing.

set -u
standalone=""
if [ -z "${EVC_RUN:-}" ]; then
	standalone=1
	. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"
	evc_require_root "$0" "$@"
	evc_install_deps
	evc_build_install
	evc_run_dir
	evc_kafka_start
	evc_cluster_start "max_prepared_transactions = 4"
	evc_minio_start
	disown "$EVC_MINIO_PID" 2>/dev/null
	evc_pyclients_install
	PGOPTIONS="-c client_min_messages=warning" psql -X -q -d evc_test \
		-c "CREATE EXTENSION IF NOT EXISTS evcollector" >/dev/null
fi
if [ -z "${EVC_MINIO_PID:-}" ] || ! kill -0 "$EVC_MINIO_PID" 2>/dev/null; then
	evc_minio_start
	disown "$EVC_MINIO_PID" 2>/dev/null
fi
[ -n "${EVC_PY:-}" ] || evc_pyclients_install
# The SIGKILL check restarts MinIO in this shell, so this shell stops it
# (and, run on its own, everything else it started).
trap 'evc_minio_stop 2>/dev/null; [ -n "$standalone" ] && evc_stop_all' EXIT

. "$EVC_ROOT/test/tap.sh"
is() { [ "$1" = "$2" ] && echo 0 || echo 1; }
produce() { "$EVC_ROOT/.build/bin/evc-produce" -b "$EVC_KAFKA_BOOTSTRAP" "$@" >/dev/null; }
ctl() { "$EVC_ROOT/test/kafkactl" -c "$EVC_KAFKA_CONTROL" "$@" >/dev/null; }
reload() { q "SELECT pg_reload_conf()" >/dev/null; sleep 0.3; }
worker_pid() { q "SELECT pid FROM evc.consumers WHERE name = '$1'"; }
# expected_json PREFIX: {object_key: sha256} of every object indexed under PREFIX.
expected_json() {
	q "SELECT coalesce(json_object_agg(object_key, sha256), '{}') FROM (SELECT object_key, sha256 FROM evc.archive_files UNION SELECT object_key, sha256 FROM evc.images) s WHERE object_key LIKE '$1%'" \
		>"$EVC_RUN/tmp/conc-expected.json"
}
pycheck() { "$EVC_PY" "$EVC_ROOT/test/minio/pycheck.py" check "$1" "$2" "$EVC_RUN/tmp/conc-expected.json" 2>&1; }
# s3_count PREFIX: how many objects boto3 lists under PREFIX (up to 1000).
s3_count() {
	"$EVC_PY" -c "import boto3, os, sys
e = os.environ
c = boto3.client('s3', endpoint_url=e['EVC_MINIO_ENDPOINT'], aws_access_key_id=e['EVC_MINIO_KEY'],
	aws_secret_access_key=e['EVC_MINIO_SECRET'], region_name=e['EVC_MINIO_REGION'])
print(c.list_objects_v2(Bucket=e['EVC_MINIO_BUCKET'], Prefix=sys.argv[1]).get('KeyCount', 0))" "$1" 2>&1
}

echo "1..15"

q "ALTER SYSTEM SET evcollector.storage_url = 's3://$EVC_MINIO_BUCKET/conc'"
q "ALTER SYSTEM SET evcollector.s3_endpoint = '$EVC_MINIO_ENDPOINT'"
q "ALTER SYSTEM SET evcollector.s3_region = '$EVC_MINIO_REGION'"
q "ALTER SYSTEM SET evcollector.s3_access_key = '$EVC_MINIO_KEY'"
q "ALTER SYSTEM SET evcollector.s3_secret_key = '$EVC_MINIO_SECRET'"
q "ALTER SYSTEM SET evcollector.s3_max_concurrency = 8"
reload

out=$(q "ALTER SYSTEM SET evcollector.s3_max_concurrency = 65" 2>&1)
tap "$([ $? -ne 0 ] && echo 0 || echo 1)" "evcollector.s3_max_concurrency refuses 65 (the range is 1 .. 64)" "$out"

# 200 images, concurrently.
ctl create_topic cc_images 4
produce -t cc_images -n 200 -g ccimg -i 100000
q "SELECT evc_consumer_create('cc_img', ARRAY['cc_images'], 'images', '{\"flush_interval\": \"200ms\"}')" >/dev/null
wait_sql 90 "SELECT count(*) = 200 FROM evc.images WHERE topic = 'cc_images'"
tap $? "the images sink landed 200 images of 100 kB with s3_max_concurrency = 8" \
	"$(q "SELECT name, landed, last_error FROM evc.consumers")"
# The multi handle keeps each connection it opened alive: one per request
# that was in flight at the same time as others.
pid=$(worker_pid cc_img)
conns=$(ss -tnpH state established "( dport = :$EVC_MINIO_PORT )" | grep -c "pid=$pid,")
tap "$([ "$conns" -ge 2 ] && [ "$conns" -le 8 ] && echo 0 || echo 1)" \
	"the worker put them on more than one connection at once and on at most 8 ($conns kept alive)" \
	"$(ss -tnpH state established "( dport = :$EVC_MINIO_PORT )")"
tap "$(is "$(q "SELECT count(DISTINCT object_key) FROM evc.images WHERE topic = 'cc_images'
	AND object_key = 'conc/images/' || left(sha256, 2) || '/' || sha256 || '.png'")" 200)" \
	"200 distinct objects, each at conc/images/<sha256[0:2]>/<sha256>.png"
expected_json conc/
out=$(pycheck boto3 conc/)
tap $? "boto3 lists the 200 objects by name and reads each back to its sha256" "$out"

# A 4xx in the middle of a concurrent batch: a proxy in front of MinIO
# (refuse_proxy.py) forwards the first 2 PUTs and answers every later one
# 403 AccessDenied while its flag file exists.
proxy_port=$(evc_free_port)
touch "$EVC_RUN/tmp/refuse"
python3 "$EVC_ROOT/test/minio/refuse_proxy.py" "$proxy_port" "$EVC_MINIO_ENDPOINT" "$EVC_RUN/tmp/refuse" 2 \
	>"$EVC_RUN/tmp/proxy.log" 2>&1 &
proxy_pid=$!
evc_wait_for 10 curl -sf -o /dev/null "http://127.0.0.1:$proxy_port/minio/health/ready"
tap $? "the refusing proxy forwards to MinIO"
q "ALTER SYSTEM SET evcollector.s3_endpoint = 'http://127.0.0.1:$proxy_port'"
q "ALTER SYSTEM SET evcollector.storage_url = 's3://$EVC_MINIO_BUCKET/conc4'"
reload
ctl create_topic cc_img4 4
produce -t cc_img4 -n 100 -g cc4 -i 100000
q "SELECT evc_consumer_create('cc_img4', ARRAY['cc_img4'], 'images', '{\"flush_interval\": \"200ms\"}')" >/dev/null
wait_sql 60 "SELECT last_error ~ 'HTTP 403 AccessDenied' FROM evc.consumers WHERE name = 'cc_img4'"
tap $? "a 403 in the middle of a concurrent batch fails it, with the S3 error in evc.consumers" \
	"$(q "SELECT last_error FROM evc.consumers WHERE name = 'cc_img4'")"
forwarded=$(grep -c forwarded "$EVC_RUN/tmp/proxy.log")
refused=$(grep -c refused "$EVC_RUN/tmp/proxy.log")
stored=$(s3_count conc4/)
tap "$([ "$forwarded" = 2 ] && [ "$stored" = 2 ] && [ "$refused" -ge 1 ] && echo 0 || echo 1)" \
	"the batch's first 2 objects were stored, later ones refused ($forwarded forwarded, $stored stored, $refused refused)"
tap "$(is "$(q "SELECT (SELECT count(*) FROM evc.images WHERE topic = 'cc_img4')
	+ (SELECT count(*) FROM evc.consumer_offsets WHERE group_id = 'evcollector.cc_img4' AND next_offset >= 0)")" 0)" \
	"nothing of the failed batch is indexed, and no offset is committed"
rm -f "$EVC_RUN/tmp/refuse"
wait_sql 90 "SELECT count(*) = 100 FROM evc.images WHERE topic = 'cc_img4'"
tap $? "once the proxy forwards again, the held images land: 100 in the index" \
	"$(q "SELECT name, landed, last_error FROM evc.consumers WHERE name = 'cc_img4'")"
expected_json conc4/
out=$(pycheck minio conc4/)
tap $? "MinIO's Python client lists exactly those 100 objects and reads each back to its sha256" "$out"
q "SELECT evc_consumer_drop('cc_img4')" >/dev/null
kill "$proxy_pid"
q "ALTER SYSTEM SET evcollector.s3_endpoint = '$EVC_MINIO_ENDPOINT'"

# SIGTERM while the puts hang: MinIO frozen, the worker waits on libcurl.
q "ALTER SYSTEM SET evcollector.storage_url = 's3://$EVC_MINIO_BUCKET/conc'"
reload
pid=$(worker_pid cc_img)
kill -STOP "$EVC_MINIO_PID"
produce -t cc_images -n 100 -s 200 -g ccimg -i 100000
wait_sql 30 "SELECT query LIKE 'landing%' FROM pg_stat_activity WHERE pid = $pid"
landing=$?
sleep 1
t0=$(date +%s%N)
kill -TERM "$pid"
for _ in $(seq 1 50); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
ms=$((($(date +%s%N) - t0) / 1000000))
kill -CONT "$EVC_MINIO_PID"
tap "$([ $landing = 0 ] && [ $ms -le 1200 ] && echo 0 || echo 1)" \
	"SIGTERM stopped the worker waiting on a frozen MinIO in $ms ms"
wait_sql 90 "SELECT count(*) = 300 FROM evc.images WHERE topic = 'cc_images'"
tap $? "MinIO thawed, the restarted worker landed those 100 images: 300 in the index" \
	"$(q "SELECT name, landed, last_error FROM evc.consumers WHERE name = 'cc_img'")"

# MinIO SIGKILLed and restarted during a concurrent batch.
produce -t cc_images -n 200 -s 300 -g ccimg -i 100000
wait_sql 60 "SELECT true FROM pg_stat_activity a JOIN evc.consumers c ON c.pid = a.pid
	WHERE c.name = 'cc_img' AND a.query LIKE 'landing%'"
landing=$?
evc_minio_restart -9 >/dev/null 2>&1
disown "$EVC_MINIO_PID" 2>/dev/null
wait_sql 120 "SELECT count(*) = 500 FROM evc.images WHERE topic = 'cc_images'"
tap "$([ $? = 0 ] && [ $landing = 0 ] && echo 0 || echo 1)" \
	"MinIO SIGKILLed mid-landing, and restarted: all 500 images are indexed" \
	"$(q "SELECT name, landed, last_error FROM evc.consumers WHERE name = 'cc_img'")"
expected_json conc/
out=$(pycheck boto3 conc/)
tap $? "boto3 reads all 500 objects back to their sha256 after the restart" "$out"

q "SELECT evc_consumer_drop('cc_img')" >/dev/null
for s in storage_url s3_endpoint s3_region s3_access_key s3_secret_key s3_max_concurrency; do
	q "ALTER SYSTEM RESET evcollector.$s"
done
q "SELECT pg_reload_conf()" >/dev/null
[ $fails -eq 0 ]
