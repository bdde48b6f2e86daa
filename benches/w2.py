#!/usr/bin/env python3
"""W2, end to end: the real Kafka broker (8 partitions) -> sluice -> S3 + Glue (moto's server);
beside it, the peers (--peers): a plain Python consumer (confluent-kafka + pyarrow + boto3,
benches/w2_python_peer.py), Kafka Connect (4.3.1, standalone) with Apache Iceberg's sink
(1.12.0; Parquet on S3, Glue as the Iceberg catalog: benches/connect/), and a Go consumer on
the libraries of Redpanda Connect's kafka_franz -> parquet_encode -> aws_s3 (franz-go,
parquet-go, aws-sdk-go-v2: benches/gopeer/).

    benches/w2.py --events 200000 --runs 3                    # needs target/release/sluice
    benches/w2.py --sluice target/debug/sluice --events 20000 --runs 1 --rate 2000 --live-seconds 15

Services: the broker at --brokers (127.0.0.1:19092 by default; `scripts/kafka.sh start` when it
does not answer there, stopped again at the end); without --endpoint, a moto server of its own on
a free port (stopped at the end). Runs itself with .venv's Python and installs
benches/requirements.txt there when a package is missing. Every topic is new (`w2-...`, deleted
at the end unless --keep-topics), every run has its own bucket, Glue database, group and state (sluice's commit state in the
bucket, or with --state file in an SQLite file of the run's).

Throughput: `sluice gen` (default settings, messy names and type conflicts; and `--clean`, which
the peer needs: it does not clean names nor split conflicting types) is replayed into a new
8-partition topic; then the measured process consumes it to the end: sluice with
`run topologies/s3-glue.yaml --until-caught-up` (timezone set to UTC like the peer, roll as in
the topology), the peer with `--until-end`. For each run it takes from the OS (wait4) the wall
time, user+system CPU time and peak RSS of that process, and prints medians: events/s, MB/s of
input, events per CPU-second, peak RSS. Each run is checked: the rows read through Glue (its
partitions' locations, the files there read with pyarrow) are exactly the valid events.

The Go peer (--peers ...,go; by default when `go` is on PATH) is built by the harness with
`go build` (modules from the Go module proxy) into benches/gopeer/.work. Like parquet_encode it
takes a declared schema, which the harness derives from the clean input before anything is
timed (every property's naive column name and JSON type). It registers no Glue table: its
check reads every Parquet object under its S3 prefix, and in the freshness phase an event is
visible once its object is listed there.

The Kafka Connect peer (--peers ...,connect; by default when benches/connect/.work holds its jars
or `benches/connect/connect.sh setup` fetches them) consumes the same clean input from its own
topic, loaded the same way, into its own bucket and Glue database on the same S3 + Glue endpoint:
benches/connect/connect.py launches the worker JVM and measures it from /proc (user+system CPU,
peak RSS = VmHWM) from launch until the Iceberg table's current snapshot holds every event, and
the same at the moment its consumer got its partitions (JVM + worker + plugin start-up): the
figures are printed with and without that start-up. Its wall time includes the wait for the next
Iceberg commit (--connect-commit-ms). Check: the snapshot's total-records, and the $insert_id of
every row of the data files under the table's S3 prefix, are exactly the valid events.

Freshness (--live-seconds S, 0 to skip): the consumer runs (sluice with roll.max_age =
--max-age; the peer flushing every --max-age seconds) on an empty topic; once it owns the 8
partitions, `sluice replay --rate R` produces R x S events. Every --poll seconds the harness lists
the table's Glue partitions, lists the objects at their locations and reads new Parquet files'
mp_insert_id: an event's visible time is the end of the listing that first showed it (not
measured for the Kafka Connect peer: its rows become visible with an Iceberg snapshot, in no Glue
partition). Its produce
time is the Kafka message's timestamp (CreateTime, set by replay's producer), read back from the
topic afterwards. freshness = visible - produce; p50/p99 are nearest-rank over all valid events,
to within the poll interval plus a poll's duration. The consumer is stopped with SIGTERM after
the last event is visible (or --max-age + 30 s after replay ends), and its CPU and RSS reported.
"""
import argparse
import importlib
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from urllib.parse import urlparse

import benchenv  # benches/benchenv.py

ROOT, VENV, VENV_PY = benchenv.ROOT, benchenv.VENV, benchenv.VENV_PY
PEER = os.path.join(ROOT, "benches", "w2_python_peer.py")
TOPOLOGY = os.path.join(ROOT, "topologies", "s3-glue.yaml")
TABLE = "mp_master_event"
REGION = "us-east-1"
CONNECT_DIR = os.path.join(ROOT, "benches", "connect")
CONNECT_PY = os.path.join(CONNECT_DIR, "connect.py")
CONNECT_WORK = os.environ.get("CONNECT_WORK", os.path.join(CONNECT_DIR, ".work"))
GOPEER_DIR = os.path.join(ROOT, "benches", "gopeer")
GOPEER_BIN = os.path.join(GOPEER_DIR, ".work", "gopeer")
PEERS = ("python", "connect", "go")


def ensure_env():
    """Runs under .venv's Python, with boto3, pyarrow and confluent-kafka installed there."""
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        benchenv.make()
        os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__), *sys.argv[1:]])
    try:
        import boto3, pyarrow, confluent_kafka  # noqa: F401
    except ImportError:
        benchenv.install()
        importlib.invalidate_caches()


ensure_env()

import boto3  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION}


def child_env():
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN")}
    env.update(AWS_ENV)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(hostport):
    host, port = hostport.split(",")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def start_moto(work):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    d = os.path.join(work, "moto")
    os.makedirs(d)
    log = open(os.path.join(d, "server.log"), "w")
    p = subprocess.Popen([os.path.join(VENV, "bin", "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                         cwd=d, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/", timeout=1).read()
            return p, url
        except OSError:
            if p.poll() is not None:
                sys.exit(f"moto_server exited; see {d}/server.log")
            time.sleep(0.2)
    sys.exit("moto_server did not answer within 20 s")


class Aws:
    def __init__(self, endpoint, own):
        self.endpoint, self.own = endpoint, own
        kw = dict(endpoint_url=endpoint, region_name=REGION,
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        self.s3 = boto3.client("s3", **kw)
        self.glue = boto3.client("glue", **kw)

    def setup(self, bucket, database):
        """A new bucket and Glue database; on our own server, everything before is dropped first."""
        if self.own:
            urllib.request.urlopen(urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST"))
        self.s3.create_bucket(Bucket=bucket)
        self.glue.create_database(DatabaseInput={"Name": database})

    def objects(self, database):
        """The Parquet objects at the locations of the table's Glue partitions: [(bucket, key)]."""
        try:
            parts = []
            for page in self.glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=TABLE):
                parts.extend(page["Partitions"])
        except self.glue.exceptions.EntityNotFoundException:
            return []
        out = []
        for p in parts:
            loc = urlparse(p["StorageDescriptor"]["Location"])
            prefix = loc.path.lstrip("/")
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                    Bucket=loc.netloc, Prefix=prefix, Delimiter="/"):
                out.extend((loc.netloc, o["Key"]) for o in page.get("Contents", [])
                           if o["Key"].endswith(".parquet"))
        return out

    def objects_under(self, bucket, prefix):
        """The Parquet objects under s3://bucket/prefix: [(bucket, key)]."""
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend((bucket, o["Key"]) for o in page.get("Contents", []) if o["Key"].endswith(".parquet"))
        return out

    def insert_ids(self, bucket, key):
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return pq.read_table(io.BytesIO(body), columns=["mp_insert_id"]).column(0).to_pylist()

    def rows(self, database):
        ids = []
        for b, k in self.objects(database):
            ids.extend(self.insert_ids(b, k))
        return ids


def valid_ids(path):
    """The $insert_id of every line sluice turns into a row (as tests/common classify does)."""
    ids = []
    with open(path, "rb") as f:
        for line in f:
            try:
                e = json.loads(line)
                p = e["properties"]
                t = p["time"]
                if (not isinstance(e["event"], str) or not e["event"] or isinstance(t, bool)
                        or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0):
                    continue
                ids.append(p.get("$insert_id") if isinstance(p.get("$insert_id"), str) else "")
            except (ValueError, KeyError, TypeError):
                continue
    return ids


def replay(a, path, topic, rate=None, wait=True):
    cmd = [a.sluice, "replay", path, "--brokers", a.brokers, "--topic", topic, "--partitions", "8",
           "--json", "--no-progress"] + (["--rate", str(rate)] if rate else [])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return replay_report(p) if wait else p


def replay_report(p):
    out = p.stdout.read()
    p.wait()
    r = json.loads(out.decode().strip().splitlines()[0])
    if p.returncode != 0 or r["failed"]:
        sys.exit(f"replay failed: {r}")
    return r


def create_topic(a, topic):
    admin = AdminClient({"bootstrap.servers": a.brokers, "log_level": 4})  # kept alive until the result
    admin.create_topics([NewTopic(topic, 8, 1)])[topic].result(30)


def wait_for_group(a, group, partitions=8, timeout=60):
    """Until the group's members own every partition (the consumer is ready), or timeout."""
    admin = AdminClient({"bootstrap.servers": a.brokers, "log_level": 4})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = admin.describe_consumer_groups([group])[group].result(10)
            owned = sum(len(m.assignment.topic_partitions) for m in d.members if m.assignment)
            if owned >= partitions:
                return True
        except Exception:
            pass
        time.sleep(0.25)
    print(f"warning: group {group} did not own {partitions} partitions within {timeout} s", file=sys.stderr)
    return False


def produce_times(a, topic, timeout=120):
    """$insert_id -> the message's Kafka timestamp (seconds), for every message of the topic."""
    c = Consumer({"bootstrap.servers": a.brokers, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    meta = c.list_topics(topic, timeout=30).topics[topic]
    tps, ends = [], {}
    for p in meta.partitions:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        if hi > lo:
            ends[p] = hi
            tps.append(TopicPartition(topic, p, lo))
    c.assign(tps)
    out, pos = {}, {}
    deadline = time.monotonic() + timeout
    while any(pos.get(p, -1) < hi for p, hi in ends.items()) and time.monotonic() < deadline:
        for m in c.consume(10000, timeout=1):
            if m.error():
                continue
            pos[m.partition()] = m.offset() + 1
            try:
                i = json.loads(m.value())["properties"]["$insert_id"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(i, str):
                out.setdefault(i, m.timestamp()[1] / 1000)
    c.close()
    return out


def finish(p, t0, name):
    """wait4 on p: (wall s, cpu s, peak RSS MiB)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"{name} failed with {p.returncode}: see {p.w2_err}\n" + tail(p.w2_err))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def tail(path, n=20):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def spawn(cmd, d, name):
    out, err = os.path.join(d, f"{name}.out"), os.path.join(d, f"{name}.err")
    p = subprocess.Popen(cmd, stdout=open(out, "w"), stderr=open(err, "w"), env=child_env())
    p.w2_out, p.w2_err = out, err
    return p


def measure(cmd, d, name):
    """Runs cmd to its end; returns (wall, cpu, rss) from the OS and its stdout."""
    t0 = time.monotonic()
    p = spawn(cmd, d, name)
    r = finish(p, t0, name)
    with open(p.w2_out) as f:
        return r, f.read()


def sluice_cmd(a, topic, group, bucket, database, state, until_caught_up, max_age=None):
    sets = [f"sources.events.brokers={a.brokers}", f"sources.events.topics=[{topic}]",
            f"sources.events.group={group}", f"sinks.lake.store.endpoint={a.endpoint}",
            f"sinks.lake.catalog.endpoint={a.endpoint}", f"sinks.lake.store.bucket={bucket}",
            f"sinks.lake.catalog.database={database}", "operators.dates.timezone=UTC"]
    if a.state == "file":
        sets.append(f"sinks.lake.catalog.state={state}")
    if max_age:
        sets.append(f"sinks.lake.roll.max_age={max_age}s")
    if a.workers is not None:
        sets.append(f"runtime.workers={a.workers}")
    cmd = [a.sluice, "run", TOPOLOGY, "--no-progress"] + (["--until-caught-up"] if until_caught_up else [])
    for s in sets:
        cmd += ["--set", s]
    return cmd


def peer_cmd(a, topic, group, bucket, database, until_end, flush_seconds=None):
    cmd = [VENV_PY, PEER, "--brokers", a.brokers, "--topic", topic, "--group", group,
           "--endpoint", a.endpoint, "--bucket", bucket, "--database", database,
           "--batch-rows", str(a.peer_batch_rows)]
    if until_end:
        cmd.append("--until-end")
    if flush_seconds:
        cmd += ["--flush-seconds", str(flush_seconds)]
    return cmd


def gopeer_ready():
    """'' when the Go peer is built (`go build`, incremental), else why it cannot be."""
    if not shutil.which("go"):
        return "no `go` on PATH"
    print("go peer: go build (benches/gopeer; modules from the Go module proxy on first use)", flush=True)
    env = dict(os.environ, GOFLAGS="-buildvcs=false")
    r = subprocess.run(["go", "build", "-o", GOPEER_BIN, "."], cwd=GOPEER_DIR, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return "`go build` in benches/gopeer failed: " + " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
    return ""


def gopeer_schema(path, out):
    """The Go peer's declared schema for the input at path (what a Redpanda Connect user writes
    in parquet_encode's `schema`): every column the input has, with its Parquet type."""
    kinds = {"mp_event_name": {"UTF8"}}
    with open(path, "rb") as f:
        for line in f:
            try:
                props = json.loads(line)["properties"].items()
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            for k, v in props:
                if v is None:
                    continue
                if k in ("time", "distinct_id"):
                    kinds.setdefault(k, {"TIMESTAMP" if k == "time" else "UTF8"})
                    continue
                t = "BOOLEAN" if isinstance(v, bool) else "DOUBLE" if isinstance(v, (int, float)) else "UTF8"
                kinds.setdefault(benchenv.naive_column(k), set()).add(t)
    cols = [{"name": c, "type": next(iter(t)) if len(t) == 1 else "UTF8"} for c, t in sorted(kinds.items())]
    with open(out, "w") as f:
        json.dump(cols, f)
    return out


def gopeer_cmd(a, topic, group, bucket, schema, until_end, flush_seconds=None):
    cmd = [GOPEER_BIN, "--brokers", a.brokers, "--topic", topic, "--group", group, "--endpoint", a.endpoint,
           "--bucket", bucket, "--schema", schema, "--batch-rows", str(a.peer_batch_rows)]
    if until_end:
        cmd.append("--until-end")
    if flush_seconds:
        cmd += ["--flush-seconds", str(flush_seconds)]
    return cmd


GOPEER_PREFIX = f"peer/{TABLE}/"


def connect_ready():
    """'' when the Kafka Connect peer can run (its jars in CONNECT_WORK, fetched now with
    `connect.sh setup` when missing), else why it cannot."""
    if not shutil.which("java"):
        return "no `java` on PATH"
    if os.path.exists(os.path.join(CONNECT_WORK, ".complete")):
        return ""
    missing = [t for t in ("mvn", "javac", "jar") if not shutil.which(t)]
    if missing:
        return f"no jars in {CONNECT_WORK} and `connect.sh setup` needs {', '.join(missing)} on PATH"
    print("connect: fetching the Kafka Connect + Iceberg sink jars (benches/connect/connect.sh setup)", flush=True)
    r = subprocess.run([os.path.join(CONNECT_DIR, "connect.sh"), "setup"], capture_output=True, text=True)
    if r.returncode != 0:
        return "`benches/connect/connect.sh setup` failed: " + " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
    return ""


def connect_run(a, topic, bucket, database, d, n):
    """One run of benches/connect/connect.py over topic (n events): its JSON result."""
    cmd = [VENV_PY, CONNECT_PY, "run", "--topic", topic, "--events", str(n), "--brokers", a.brokers,
           "--endpoint", a.endpoint, "--bucket", bucket, "--database", database, "--work", CONNECT_WORK,
           "--tasks", str(a.connect_tasks), "--commit-interval-ms", str(a.connect_commit_ms)]
    p = spawn(cmd, d, "connect")
    p.wait()
    with open(p.w2_out) as f:
        lines = f.read().strip().splitlines()
    try:
        r = json.loads(lines[-1])
    except (ValueError, IndexError):
        sys.exit(f"connect.py printed no result (exit {p.returncode}): see {p.w2_err}\n" + tail(p.w2_err))
    a.topics.append(f"w2c-control-{r['run']}")
    if not r["ok"] or r.get("cpu_s") is None:
        sys.exit(f"connect failed (exit {p.returncode}): {r['errors']}; worker logs in {r['rundir']}\n" + tail(p.w2_err))
    if r.get("steady_cpu_s") is None:
        sys.exit(f"connect: no start-up mark in the worker log; see {r['rundir']}")
    return r


def iceberg_insert_ids(aws, bucket, key):
    """properties.$insert_id of every row of an Iceberg data file (Iceberg writes `$` as `_x24`)."""
    f = pq.ParquetFile(io.BytesIO(aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    props = f.schema_arrow.field("properties").type
    name = next(x for x in ("_x24insert_id", "$insert_id") if props.get_field_index(x) >= 0)
    col = f.read(columns=[f"properties.{name}"]).column(0)
    if pa.types.is_struct(col.type):  # pyarrow versions that keep the parent struct
        col = pc.struct_field(col, name)
    return col.to_pylist()


def connect_check(aws, bucket, r, ids, name):
    """The Iceberg snapshot's total-records and the rows of the data files under the run's prefix
    are exactly the valid events."""
    got = []
    for b, k in aws.objects_under(bucket, f"{r['run']}/"):
        if "/data/" in k:
            got.extend(iceberg_insert_ids(aws, b, k))
    problems = []
    if r["records_in_table"] != len(ids):
        problems.append(f"the Iceberg snapshot holds {r['records_in_table']} records, {len(ids)} valid events")
    if len(got) != len(ids):
        problems.append(f"{len(got)} rows in the data files on S3, {len(ids)} valid events")
    if set(got) != set(ids):
        problems.append(f"{len(set(ids) - set(got))} valid events missing, {len(set(got) - set(ids))} unknown")
    if problems:
        sys.exit(f"{name}: " + "; ".join(problems) + f"; worker logs in {r['rundir']}")
    return len(got)


def check(aws, database, ids, name, written=None, bucket=None):
    """The rows read through the Glue table's partitions (or, given bucket, in every object under
    the Go peer's prefix there) are exactly the valid events."""
    if bucket is None:
        got, where = aws.rows(database), "through Glue"
    else:
        got, where = [], f"under s3://{bucket}/{GOPEER_PREFIX}"
        for b, k in aws.objects_under(bucket, GOPEER_PREFIX):
            got.extend(aws.insert_ids(b, k))
    problems = []
    if len(got) != len(ids):
        problems.append(f"{len(got)} rows {where}, {len(ids)} valid events")
    if set(got) != set(ids):
        problems.append(f"{len(set(ids) - set(got))} valid events missing, {len(set(got) - set(ids))} unknown")
    if written is not None and written != len(ids):
        problems.append(f"the run says {written} rows written, {len(ids)} valid events")
    if problems:
        sys.exit(f"{name}: " + "; ".join(problems))
    return len(got)


def summary_rows(text):
    m = re.search(r"rows written\s+(\d+)", text)
    return int(m.group(1)) if m else None


def report(name, runs, events, size):
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rss = max(r[2] for r in runs)
    row = {
        "name": name, "runs": len(runs), "events": events,
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "events_per_s": round(events / wall), "mb_per_s": round(size / 1e6 / wall, 1),
        "events_per_cpu_s": round(events / cpu), "peak_rss_mib": round(rss),
    }
    print(f"{name:<28} {row['events_per_s']:>10,} ev/s {row['mb_per_s']:>7} MB/s "
          f"{row['events_per_cpu_s']:>10,} ev/CPU-s  {row['peak_rss_mib']:>6} MiB peak  "
          f"(median of {len(runs)}; wall {wall:.2f} s, cpu {cpu:.2f} s)", flush=True)
    return row


def nearest_rank(sorted_values, q):
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def live(a, aws, work, tag, name, kind, path, ids):
    """One freshness run of `name` (sluice, python or go) on its own topic: returns a result row."""
    d = os.path.join(work, f"live-{name}")
    os.makedirs(d)
    topic, group = f"w2-{tag}-live-{name}", f"w2-{tag}-live-{name}"
    bucket = f"w2-{tag}-live-{name}".lower()
    database = f"w2_{tag}_live_{name}"
    aws.setup(bucket, database)
    create_topic(a, topic)
    a.topics.append(topic)
    if name == "sluice":
        cmd = sluice_cmd(a, topic, group, bucket, database, os.path.join(d, "state.sqlite"), False, a.max_age)
    elif name == "go":
        cmd = gopeer_cmd(a, topic, group, bucket, gopeer_schema(path, os.path.join(d, "schema.json")), False,
                         a.max_age)
    else:
        cmd = peer_cmd(a, topic, group, bucket, database, False, a.max_age)
    t0 = time.monotonic()
    p = spawn(cmd, d, name)
    wait_for_group(a, group)
    if p.poll() is not None:
        sys.exit(f"{name} exited early: see {p.w2_err}\n" + tail(p.w2_err))
    rp = replay(a, path, topic, rate=a.rate, wait=False)
    want = set(ids)
    visible, seen, poll_s, deadline, got = {}, set(), [], None, 0
    while True:
        start = time.monotonic()
        listed = aws.objects_under(bucket, GOPEER_PREFIX) if name == "go" else aws.objects(database)
        objs = [o for o in listed if o not in seen]
        now = time.time()
        for o in objs:
            seen.add(o)
            for i in aws.insert_ids(*o):
                if i not in visible:
                    visible[i] = now
                    got += i in want
        poll_s.append(time.monotonic() - start)
        if deadline is None and rp.poll() is not None:
            deadline = time.monotonic() + a.max_age + 30
        if deadline is not None and (got >= len(want) or time.monotonic() > deadline):
            break
        if p.poll() is not None:
            sys.exit(f"{name} exited during the live run: see {p.w2_err}\n" + tail(p.w2_err))
        time.sleep(max(0.0, a.poll - (time.monotonic() - start)))
    rr = replay_report(rp)
    p.send_signal(signal.SIGTERM)
    wall, cpu, rss = finish(p, t0, name)
    produced = produce_times(a, topic)
    fresh = sorted(visible[i] - produced[i] for i in want if i in visible and i in produced)
    n = len(want)
    row = {
        "name": f"{name} ({kind})", "rate": a.rate, "seconds": a.live_seconds, "events": n,
        "replay_events_per_s": round(rr["events_per_second"]),
        "window_s": a.max_age, "poll_s": a.poll, "mean_poll_duration_s": round(statistics.mean(poll_s), 3),
        "visible": len(fresh), "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
        "events_per_cpu_s": round(n / cpu) if cpu else None, "peak_rss_mib": round(rss),
    }
    if fresh:
        row.update(p50_s=round(nearest_rank(fresh, 0.5), 2), p99_s=round(nearest_rank(fresh, 0.99), 2),
                   max_s=round(fresh[-1], 2), target_met=nearest_rank(fresh, 0.99) <= a.max_age + 5)
    if name == "go":
        row["visible_when"] = "its object is listed under the peer's S3 prefix (it registers no Glue partition)"
    what = "roll.max_age" if name == "sluice" else "flush every"
    print(f"{row['name']:<28} freshness p50 {row.get('p50_s', '-')} s, p99 {row.get('p99_s', '-')} s, "
          f"max {row.get('max_s', '-')} s ({len(fresh):,}/{n:,} visible; {what} {a.max_age} s; "
          f"p99 <= {a.max_age + 5} s: {'met' if row.get('target_met') else 'NOT met'}); "
          f"{a.rate:,} ev/s asked, {row['replay_events_per_s']:,} produced; "
          f"CPU {cpu:.2f} s over {wall:.1f} s, {row['peak_rss_mib']} MiB peak", flush=True)
    return row


def warm_broker(brokers):
    """A new broker makes its group coordinator's topic (__consumer_offsets, 50 partitions) on
    the first group's first request, which takes seconds: asked for here, before anything is
    timed, so that it does not fall on the first measured run."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    t0 = time.monotonic()
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"w2-warm-{os.getpid()}",
                  "enable.auto.commit": False})
    # While the coordinator's topic is being made, the broker answers that it is not (yet) the
    # coordinator: asked again until it is, for a minute at most.
    not_yet = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
               KafkaError.COORDINATOR_NOT_AVAILABLE}
    try:
        while True:
            try:
                c.committed([TopicPartition("w2-warm", 0)], timeout=60)
                break
            except KafkaException as e:
                err = e.args[0]
                if err.code() not in not_yet or time.monotonic() - t0 > 60:
                    raise
                time.sleep(0.5)
    finally:
        c.close()
    print(f"kafka: group coordinator ready in {time.monotonic() - t0:.1f} s", flush=True)


def main():
    # Stopped (Ctrl-C's SIGINT or a SIGTERM), the run still goes through its `finally`s, which
    # stop the broker, the moto server and the peers it started; a plain SIGTERM left them running.
    signal.signal(signal.SIGTERM, lambda sig, _frame: sys.exit(128 + sig))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=5_000, help="events/s produced in the freshness phase")
    ap.add_argument("--live-seconds", type=int, default=30, help="length of the freshness phase; 0 skips it")
    ap.add_argument("--max-age", type=int, default=10, help="sluice roll.max_age (s) and the peer's flush interval there")
    ap.add_argument("--poll", type=float, default=0.25, help="seconds between two looks at Glue + S3")
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target/release/sluice"))
    ap.add_argument("--workers", type=int, help="sluice's runtime.workers (default: the topology's)")
    ap.add_argument("--endpoint", help="an S3 + Glue endpoint (default: a moto server of its own)")
    ap.add_argument("--brokers", default="127.0.0.1:19092")
    ap.add_argument("--peers", default="auto",
                    help="comma-separated: python, connect, go; or none. Default: all three, leaving out (and "
                         "saying why) Kafka Connect when its jars are not there and cannot be fetched, and the Go "
                         "peer when it cannot be built")
    ap.add_argument("--peer-batch-rows", type=int, default=50_000, help="rows per batch of the Python and Go peers")
    ap.add_argument("--connect-tasks", type=int, default=1, help="tasks.max of the Kafka Connect peer's sink")
    ap.add_argument("--connect-commit-ms", type=int, default=5000,
                    help="Iceberg commit interval of the Kafka Connect peer (iceberg.control.commit.interval-ms)")
    ap.add_argument("--state", choices=["bucket", "file"], default="bucket",
                    help="sluice's commit state: in the bucket (the default) or an SQLite file per run")
    ap.add_argument("--keep-topics", action="store_true")
    ap.add_argument("--json", nargs="?", const="-", help="also print the figures as JSON (to a file if given)")
    a = ap.parse_args()
    a.sluice = os.path.abspath(a.sluice)
    if not os.path.exists(a.sluice):
        sys.exit(f"no binary at {a.sluice}: cargo build --release (or pass --sluice)")
    ready = {"connect": ("Kafka Connect peer", connect_ready), "go": ("Go peer", gopeer_ready)}
    if a.peers == "auto":
        peers = ["python"]
        for p, (what, check_ready) in ready.items():
            if why := check_ready():
                print(f"{what} skipped: {why}", flush=True)
            else:
                peers.append(p)
    else:
        peers = [p for p in a.peers.split(",") if p and p != "none"]
        if set(peers) - set(PEERS):
            sys.exit(f"unknown peer(s) {sorted(set(peers) - set(PEERS))}: {', '.join(PEERS)} or none")
        for p in peers:
            if p in ready and (why := ready[p][1]()):
                sys.exit(f"{ready[p][0]}: {why}")
    work = tempfile.mkdtemp(prefix="sluice-w2-")
    tag = f"{time.strftime('%H%M%S')}{os.getpid()}"
    moto, kafka_started, a.topics = None, False, []
    try:
        if not reachable(a.brokers):
            if a.brokers != "127.0.0.1:19092":
                sys.exit(f"no broker at {a.brokers}")
            subprocess.run([os.path.join(ROOT, "scripts/kafka.sh"), "start"], check=True)
            kafka_started = True
        warm_broker(a.brokers)
        if not a.endpoint:
            moto, a.endpoint = start_moto(work)
        aws = Aws(a.endpoint, own=moto is not None)
        print(f"W2: {a.events:,} events, {a.runs} run(s), broker {a.brokers} (8 partitions), "
              f"S3 + Glue at {a.endpoint}{' (moto, own)' if moto else ''}, {os.path.relpath(a.sluice, ROOT)}",
              flush=True)

        inputs, ids = {}, {}
        for kind, extra in [("messy", []), ("clean", ["--clean"])]:
            path = os.path.join(work, f"{kind}.ndjson")
            subprocess.run([a.sluice, "gen", "--events", str(a.events), "--seed", "1", *extra, "-o", path],
                           check=True, stderr=subprocess.DEVNULL)
            inputs[kind], ids[kind] = path, valid_ids(path)
        schemas = {"clean": gopeer_schema(inputs["clean"], os.path.join(work, "gopeer-schema.json"))} if "go" in peers else {}

        rows = []
        consumers = [("sluice", "messy"), ("sluice", "clean")] + [(p, "clean") for p in peers]
        for name, kind in consumers:
            runs, steady, startup, files = [], [], [], []
            for i in range(a.runs):
                d = os.path.join(work, f"{name}-{kind}-{i}")
                os.makedirs(d)
                topic = group = f"w2-{tag}-{name}-{kind}-{i}"
                bucket, database = topic.lower(), topic.replace("-", "_")
                aws.setup(bucket, database)
                replay(a, inputs[kind], topic)
                a.topics.append(topic)
                if name == "connect":
                    r = connect_run(a, topic, bucket, database, d, len(ids[kind]))
                    checked = connect_check(aws, bucket, r, ids[kind], f"connect ({kind}) run {i + 1}")
                    runs.append((r["wall_s"], r["cpu_s"], r["peak_rss_mib"]))
                    steady.append((r["steady_wall_s"], r["steady_cpu_s"], r["peak_rss_mib"]))
                    startup.append((r["startup_wall_s"], r["startup_cpu_s"]))
                    files.append(r["data_files"])
                    shutil.rmtree(r["rundir"], ignore_errors=True)
                    shutil.rmtree(d)
                    continue
                if name == "sluice":
                    cmd = sluice_cmd(a, topic, group, bucket, database, os.path.join(d, "state.sqlite"), True)
                elif name == "go":
                    cmd = gopeer_cmd(a, topic, group, bucket, schemas[kind], True)
                else:
                    cmd = peer_cmd(a, topic, group, bucket, database, True)
                r, out = measure(cmd, d, name)
                summary = {} if name == "sluice" else json.loads(out)
                written = summary_rows(out) if name == "sluice" else summary["rows"]
                if dropped := summary.get("dropped_properties"):
                    sys.exit(f"go ({kind}) run {i + 1}: {dropped} property values fit no declared column")
                checked = check(aws, database, ids[kind], f"{name} ({kind}) run {i + 1}", written,
                                bucket if name == "go" else None)
                runs.append(r)
                shutil.rmtree(d)
            rows.append(report(f"{name} ({kind})", runs, a.events, os.path.getsize(inputs[kind])))
            if name == "go":
                rows[-1]["rows_checked_in_s3_objects"] = checked
                continue
            if name != "connect":
                rows[-1]["rows_checked_through_glue"] = checked
                continue
            sw, sc = statistics.median(x[0] for x in startup), statistics.median(x[1] for x in startup)
            rows[-1].update(rows_checked_in_iceberg_data_files=checked, startup_wall_s=round(sw, 2),
                            startup_cpu_s=round(sc, 2), tasks=a.connect_tasks,
                            commit_interval_ms=a.connect_commit_ms, data_files=statistics.median(files))
            print(f"{'':<28} JVM + worker + sink start-up until its consumer had the partitions: "
                  f"{sw:.2f} s wall, {sc:.2f} s CPU (median); without it:", flush=True)
            rows.append(report(f"{name} ({kind}, excl. start)", steady, a.events, os.path.getsize(inputs[kind])))
            rows[-1]["excludes"] = "JVM + Connect worker + Iceberg sink start-up, up to the partition assignment"

        ratios = {}
        by = {r["name"]: r for r in rows}
        versus = [(p, f"{p} (clean)", "") for p in peers]
        if "connect" in peers:
            versus.append(("connect excl. start", "connect (clean, excl. start)",
                           " (Connect without its JVM start-up; sluice with its own)"))
        for p, q_name, note in versus:
            s, q = by["sluice (clean)"], by[q_name]
            ratios[p] = {k: round(s[k] / q[k], 2) for k in ("events_per_s", "mb_per_s", "events_per_cpu_s", "peak_rss_mib")}
            r = ratios[p]
            print(f"sluice/{p} on the same clean rows: {r['events_per_s']:.2f}x events/s, {r['mb_per_s']:.2f}x MB/s, "
                  f"{r['events_per_cpu_s']:.2f}x events per CPU-second, {r['peak_rss_mib']:.2f}x peak RSS{note}",
                  flush=True)

        lives = []
        if a.live_seconds > 0:
            n = a.rate * a.live_seconds
            print(f"freshness: {n:,} events at {a.rate:,} ev/s into a new 8-partition topic; "
                  f"polling Glue + S3 every {a.poll} s", flush=True)
            for name, kind in [("sluice", "messy")] + [(p, "clean") for p in peers if p != "connect"]:
                path = os.path.join(work, f"live-{kind}.ndjson")
                if not os.path.exists(path):
                    subprocess.run([a.sluice, "gen", "--events", str(n), "--seed", "2",
                                    *(["--clean"] if kind == "clean" else []), "-o", path],
                                   check=True, stderr=subprocess.DEVNULL)
                lives.append(live(a, aws, work, tag, name, kind, path, valid_ids(path)))
            s = lives[0]
            for q in lives[1:]:
                if "p99_s" in s and "p99_s" in q:
                    pn = q["name"].split()[0]
                    ratios.setdefault(pn, {}).update(
                        freshness_p50=round(s["p50_s"] / q["p50_s"], 2), freshness_p99=round(s["p99_s"] / q["p99_s"], 2))
                    print(f"sluice/{pn} freshness: {ratios[pn]['freshness_p50']:.2f}x p50, "
                          f"{ratios[pn]['freshness_p99']:.2f}x p99 (lower is fresher; sluice on messy input)")
            if "connect" in peers:
                print("connect freshness: not measured (its rows become visible with an Iceberg snapshot, every "
                      "--connect-commit-ms, not in Glue partitions; this harness polls Glue partitions)")

        if "python" in peers:
            print("not done by the Python peer: Mixpanel name cleaning (naive `$x` -> `mp_x` only; fed --clean input), "
                  "_string/_number columns on type conflicts, dead letters, the schema map, exactly-once commits "
                  "(it is at least once); it does write Parquet per mp_date to S3 and registers the Glue table and partitions.")
        if "connect" in peers:
            print("the Kafka Connect peer is Kafka Connect 4.3.1 + Apache Iceberg's sink 1.12.0, not Aiven's S3 sink "
                  "(not served by this machine's Maven mirror). Not done by it: Mixpanel name cleaning (fed --clean "
                  "input; rows are `event` + a `properties` struct, `$x` names stored as `_x24x`), _string/_number "
                  "columns on type conflicts, dead letters, the schema map, Glue partitions (an Iceberg table in Glue; "
                  "identity(mp_date) partitions, from a custom SMT, live in Iceberg's metadata). Exactly-once: as "
                  "Iceberg's sink documents it (data files and consumer offsets go through a Kafka transaction on "
                  "its control topic, then one snapshot per commit), with its defaults; not exercised by failures here.")
        if "go" in peers:
            print("the Go peer is not Redpanda Connect itself (github.com/redpanda-data/connect/v4 is not under an "
                  "open-source licence, so the harness does not install it; its MIT core, benthos/v4, has no Kafka, "
                  "Parquet or S3 components) but a program of the harness's on the libraries its kafka_franz, "
                  "parquet_encode and aws_s3 are built on: franz-go, parquet-go (Snappy, parquet_encode's "
                  "DELTA_LENGTH_BYTE_ARRAY strings), aws-sdk-go-v2. Not done by it: Mixpanel name cleaning (fed "
                  "--clean input and a declared schema, as parquet_encode needs; naive `$x` -> `mp_x`), "
                  "_string/_number columns on type conflicts, dead letters, the Glue table and partitions (Redpanda "
                  "Connect has no Glue output; freshness counts an object listed under its S3 prefix), "
                  "exactly-once commits (it is at least once).")
        else:
            print("not measured: Redpanda Connect, nor the Go peer on its libraries (--peers ...,go).")
        if a.json:
            doc = {"events": a.events, "runs": a.runs, "sluice": a.sluice, "endpoint": a.endpoint,
                   "brokers": a.brokers, "partitions": 8, "peers": peers, "throughput": rows,
                   "ratios_sluice_over_peer": ratios, "freshness": lives}
            if a.json == "-":
                print(json.dumps(doc, indent=2))
            else:
                with open(a.json, "w") as f:
                    json.dump(doc, f, indent=2)
    finally:
        if a.topics and not a.keep_topics:
            try:
                admin = AdminClient({"bootstrap.servers": a.brokers, "log_level": 4})
                try:
                    for f in admin.delete_topics(a.topics).values():
                        f.result(30)
                finally:
                    # Closed now, not at exit: after the broker stops it would log a refused
                    # connection every second.
                    del admin
            except Exception as e:
                print(f"warning: deleting the topics: {e}", file=sys.stderr)
        if moto:
            moto.terminate()
            moto.wait()
        if kafka_started:
            subprocess.run([os.path.join(ROOT, "scripts/kafka.sh"), "stop"])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
