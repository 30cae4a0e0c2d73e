#!/usr/bin/env python3
"""test/kafka/realctl.py: kafkactl's commands for a real Apache Kafka.

The pgTAP suites in test/suites steer their Kafka through bin/kafkactl,
run by the PostgreSQL server as user postgres: one command line to a control
port, one line back ("ok..." or "error: ...").  Against the librdkafka mock
cluster that port is test/tools/kafka_mock.c's.  Against a real cluster
started by test/kafka/kafka.sh the brokers are root's processes, so a
postgres process cannot stop them itself; this file is both ends:

    realctl.py serve --port P       the server, run by the harness (root),
                                    in the environment evc_kafka_real_start
                                    exported; it acts through kafka.sh
    realctl.py [-c HOST:PORT] CMD   the client, installed as bin/kafkactl for
                                    the suites' server (test/kafka/flows_suites.sh)

Commands, with the mock's names and replies:

    ping                            ok
    create_topic NAME PARTS [RF]    Kafka's TopicCommand --create --if-not-exists
                                    (RF defaults to min(nodes, 3))
    broker_down ID                  stops the node that stands for the mock's
    broker_up ID                    broker ID: node ((ID - 1) mod N) + 1, so on
                                    one node "every broker down" stops it once;
                                    down is SIGTERM (a clean stop), up returns
                                    once the cluster lists every broker again
    rtt, push_errors, clear_errors, partition_leader
                                    an error that says the real cluster has no
                                    such fault injection; suites skip them

The client waits up to 180 s for the reply (a node restart can take 15 s),
where the mock's kafkactl waits 10 s; its exit status is kafkactl's: 0 for
"ok...", 1 for any other reply, 2 for usage or connection errors.
"""

import os
import socket
import socketserver
import subprocess
import sys

MOCK_ONLY = ("rtt", "push_errors", "clear_errors", "partition_leader")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kafka_sh(script, timeout, *args):
    """Run script in bash with test/lib.sh (and so kafka.sh) sourced, args as
    $1...; the cluster's state comes from EVC_KAFKA_REAL_* in our
    environment."""
    cmd = '. "$EVC_ROOT/test/lib.sh" || exit 1\n' + script
    env = dict(os.environ, EVC_ROOT=os.environ.get("EVC_ROOT", ROOT))
    try:
        p = subprocess.run(["bash", "-c", cmd, "realctl"] + list(args), env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 1, "timed out after %d s" % timeout
    return p.returncode, (p.stdout + p.stderr).strip()


def node_of(broker_id):
    nodes = int(os.environ.get("EVC_KAFKA_REAL_NODES", "0"))
    b = int(broker_id)
    if nodes < 1 or b < 1:
        raise ValueError("no node for broker %s (%d nodes)" % (broker_id, nodes))
    return (b - 1) % nodes + 1


def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1][:300] if lines else "no output"


def command(argv):
    if not argv:
        return "error: empty command"
    name, args = argv[0], argv[1:]
    if name == "ping":
        return "ok pong"
    if name == "bootstrap":
        return "ok " + os.environ.get("EVC_KAFKA_REAL_BOOTSTRAP", "")
    if name in MOCK_ONLY:
        return ("error: %s needs librdkafka's mock cluster (test/tools/kafka_mock.c); "
                "Apache Kafka has no such fault injection" % name)
    if name == "create_topic":
        if len(args) not in (2, 3) or not all(a.isdigit() for a in args[1:]):
            return "error: usage: create_topic NAME PARTITIONS [REPLICATION]"
        nodes = int(os.environ.get("EVC_KAFKA_REAL_NODES", "1"))
        rf = args[2] if len(args) == 3 else str(min(nodes, 3))
        rc, out = kafka_sh('evc_kafka_real_topics --create --if-not-exists --topic "$1" '
                           '--partitions "$2" --replication-factor "$3" 2>&1', 120, args[0], args[1], rf)
        return "ok" if rc == 0 else "error: TopicCommand: " + last_line(out)
    if name in ("broker_down", "broker_up"):
        if len(args) != 1 or not args[0].isdigit():
            return "error: usage: %s ID" % name
        try:
            i = node_of(args[0])
        except ValueError as e:
            return "error: %s" % e
        if name == "broker_down":
            # A clean stop: a node SIGKILLed and started again at once waits
            # for its old controller session to expire (about 12 s).
            script = ('pid=$(_evc_kr_pid %d) || exit 0\n'
                      'kill -TERM "$pid"\n'
                      '_evc_kr_gone "$pid" 30 || { kill -KILL "$pid"; _evc_kr_gone "$pid" 10; }\n'
                      'rm -f "$(_evc_kr_node_dir %d)/pid"\n') % (i, i)
            rc, out = kafka_sh(script, 60)
        else:
            rc, out = kafka_sh('_evc_kr_pid %d >/dev/null && exit 0\nevc_kafka_real_restart %d 2>&1\n' % (i, i), 150)
        return "ok" if rc == 0 else "error: node %d: %s" % (i, last_line(out))
    return "error: unknown command \"%s\"" % name


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().decode("utf-8", "replace").strip()
        try:
            reply = command(line.split())
        except Exception as e:  # the reply is the only channel to the suite
            reply = "error: %s" % e
        sys.stderr.write("realctl: %s -> %s\n" % (line, reply))
        sys.stderr.flush()
        self.wfile.write((reply + "\n").encode())


def serve(port):
    # One command at a time: a broker_up must not race a broker_down.
    socketserver.TCPServer.allow_reuse_address = True
    with socketserver.TCPServer(("127.0.0.1", port), Handler) as srv:
        srv.serve_forever()


def client(addr, argv):
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        sys.stderr.write("kafkactl: bad control address \"%s\" (want HOST:PORT)\n" % addr)
        return 2
    try:
        with socket.create_connection((host, int(port)), timeout=180) as s:
            s.sendall((" ".join(argv) + "\n").encode())
            reply = s.makefile("rb").readline().decode("utf-8", "replace").strip()
    except OSError as e:
        sys.stderr.write("kafkactl: %s: %s\n" % (addr, e))
        return 2
    if not reply:
        sys.stderr.write("kafkactl: no reply from %s\n" % addr)
        return 2
    print(reply)
    return 0 if reply == "ok" or reply.startswith("ok ") else 1


def main(argv):
    if len(argv) >= 3 and argv[0] == "serve" and argv[1] == "--port":
        serve(int(argv[2]))
        return 0
    addr = os.environ.get("EVC_KAFKA_CONTROL", "")
    if len(argv) >= 2 and argv[0] == "-c":
        addr, argv = argv[1], argv[2:]
    if not argv or not addr:
        sys.stderr.write("usage: kafkactl [-c HOST:PORT] COMMAND ARGS... | realctl.py serve --port PORT\n")
        return 2
    return client(addr, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
