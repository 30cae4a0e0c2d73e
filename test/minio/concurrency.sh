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
#  - a 4xx in the middle of a concurrent batch (one archive file's key is
#    over MinIO's 1024 bytes, the others of the same batch are stored)
#    fails the whole batch: nothing is indexed or committed, and once the
#    prefix is fixed everything lands, each offset once;
#  - SIGTERM stops a worker whose puts hang on a frozen (SIGSTOPped) MinIO
#    within a second, and nothing is lost;
#  - MinIO SIGKILLed and restarted during a concurrent batch loses nothing.

set -u
if [ -z "${EVC_RUN:-}" ]; then
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

n=0
fails=0
tap() {
	# tap OK DESCRIPTION [DIAG]
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		[ -n "${3:-}" ] && echo "$3" | head -20 | sed 's/^/# /'
		fails=$((fails + 1))
	fi
}
is() { [ "$1" = "$2" ] && echo 0 || echo 1; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d evc_test -c "$1"; }
# wait_sql SECONDS QUERY: until QUERY returns t.
wait_sql() {
	local deadline=$((SECONDS + $1))
	until [ "$(q "$2" 2>/dev/null)" = t ]; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.2
	done
}
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
# s3_count PREFIX: how many objects MinIO lists under PREFIX (ASCII, no spaces).
s3_count() {
	curl -sS --max-time 10 --aws-sigv4 "aws:amz:$EVC_MINIO_REGION:s3" --user "$EVC_MINIO_KEY:$EVC_MINIO_SECRET" \
		-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
		"$EVC_MINIO_ENDPOINT/$EVC_MINIO_BUCKET?list-type=2&max-keys=1000&prefix=$1" | grep -o '<Key>' | wc -l
}

echo "1..16"

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

# A 4xx in the middle of a concurrent batch.  Under an 800-character
# prefix, the files of cc_arch_a have keys of about 860 bytes and those of
# the 150-character topic about 1120, over MinIO's 1024: MinIO stores the
# first and answers 400 KeyTooLongError for the second, in one batch.
long_prefix=$(printf 'p%.0s' $(seq 1 199))
long_prefix="$long_prefix/$long_prefix/$long_prefix/$long_prefix"
long_topic="cc_long_$(printf 'x%.0s' $(seq 1 142))"
q "ALTER SYSTEM SET evcollector.storage_url = 's3://$EVC_MINIO_BUCKET/$long_prefix'"
reload
ctl create_topic cc_arch_a 4
ctl create_topic "$long_topic" 4
produce -t cc_arch_a -n 800 -g cca
produce -t "$long_topic" -n 800 -g ccb
q "SELECT evc_consumer_create('cc_arch', ARRAY['cc_arch_a', '$long_topic'], 'archive', '{\"batch_size\": 100, \"flush_interval\": \"200ms\"}')" >/dev/null
wait_sql 60 "SELECT last_error ~ '400 KeyTooLongError' FROM evc.consumers WHERE name = 'cc_arch'"
tap $? "a key over 1024 bytes fails the concurrent batch with MinIO's 400 KeyTooLongError" \
	"$(q "SELECT last_error FROM evc.consumers WHERE name = 'cc_arch'")"
stored=$(s3_count "$long_prefix/cc_arch_a/")
tap "$([ "$stored" -ge 1 ] && echo 0 || echo 1)" \
	"the other objects of that batch were put meanwhile ($stored of cc_arch_a in MinIO)"
tap "$(is "$(q "SELECT (SELECT count(*) FROM evc.archive_files WHERE consumer = 'cc_arch')
	+ (SELECT count(*) FROM evc.consumer_offsets WHERE group_id = 'evcollector.cc_arch' AND next_offset >= 0)")" 0)" \
	"nothing of the failed batch is indexed, and no offset is committed"
q "ALTER SYSTEM SET evcollector.storage_url = 's3://$EVC_MINIO_BUCKET/conc-fixed'"
reload
wait_sql 90 "SELECT coalesce(sum(events), 0) = 1600 FROM evc.archive_files WHERE consumer = 'cc_arch'"
tap $? "once the prefix is fixed, the held events land: 1600 in the index" \
	"$(q "SELECT name, landed, last_error FROM evc.consumers WHERE name = 'cc_arch'")"
tap "$(is "$(q "SELECT count(*) FROM (SELECT topic, partition, generate_series(first_offset, last_offset) FROM evc.archive_files
	WHERE consumer = 'cc_arch' GROUP BY 1, 2, 3 HAVING count(*) > 1) d")" 0)" "no offset is in two archive files"
expected_json conc-fixed/
out=$(pycheck minio conc-fixed/)
tap $? "MinIO's Python client reads every archive file back to its sha256" "$out"

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

q "SELECT evc_consumer_drop('cc_img'), evc_consumer_drop('cc_arch')" >/dev/null
for s in storage_url s3_endpoint s3_region s3_access_key s3_secret_key s3_max_concurrency; do
	q "ALTER SYSTEM RESET evcollector.$s"
done
q "SELECT pg_reload_conf()" >/dev/null
[ $fails -eq 0 ]
