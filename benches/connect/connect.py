#!/usr/bin/env python3
"""Kafka Connect peer for W2: Apache Kafka Connect (standalone worker, 4.3.1) running Apache
Iceberg's sink connector (1.12.0): Parquet data files on S3 (S3FileIO) and the AWS Glue Data
Catalog as the Iceberg catalog, both served by moto. Aiven's S3 sink, the peer first planned, is
not served by this machine's Maven Central (see README.md beside this file).

    connect.py run --topic w2c-test --events 20000 [--tasks 1] [--commit-interval-ms 5000]

It needs the jars that `connect.sh setup` fetches, a broker (--brokers) holding the topic and a
moto server (--endpoint; the bucket and the Glue database are created here). Each run uses a new
connector name (hence a new consumer group: it reads the topic from the start), a new control
topic, a new Glue table and a new S3 prefix.

Measures, for the worker JVM (from /proc, sampled every 0.2 s): wall time from launch until the
Iceberg table's current snapshot holds every event (`total-records` == --events, read from the
table metadata the Glue table points at), user+system CPU up to that moment, peak RSS (VmHWM),
and the same at the moment the sink's consumer got its partitions (JVM + worker + plugin start).
Prints one JSON object on stdout; progress goes to stderr.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
CLK = os.sysconf("SC_CLK_TCK")
REGION = "us-east-1"
# What bin/connect-standalone.sh passes (kafka-run-class.sh's defaults).
JVM_OPTS = ["-Xms256M", "-Xmx2G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true"]


def log(msg):
    print(f"[connect] {msg}", file=sys.stderr, flush=True)


def proc_cpu(pid):
    """user+system CPU seconds of pid (all its threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError):
        return None


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return None


def write_props(path, props):
    with open(path, "w") as f:
        for k, v in props.items():
            f.write(f"{k}={v}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["run"])
    ap.add_argument("--topic", required=True)
    ap.add_argument("--events", type=int, required=True, help="records in the topic: done when the table has them all")
    ap.add_argument("--brokers", default="127.0.0.1:19092")
    ap.add_argument("--endpoint", default="http://127.0.0.1:5062")
    ap.add_argument("--bucket", default="w2c-bench")
    ap.add_argument("--database", default="w2c_bench")
    ap.add_argument("--tasks", type=int, default=1)
    ap.add_argument("--commit-interval-ms", type=int, default=5000,
                    help="Iceberg commit interval (the sink's default is 300000)")
    ap.add_argument("--no-partition", action="store_true", help="unpartitioned table, no mp_date SMT")
    ap.add_argument("--compression", default="snappy", help="write.parquet.compression-codec (Iceberg's default is zstd)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--work", default=os.environ.get("CONNECT_WORK", os.path.join(HERE, ".work")))
    ap.add_argument("--keep", action="store_true", help="leave the worker running (debugging)")
    a = ap.parse_args()

    import boto3
    from confluent_kafka.admin import AdminClient, NewTopic

    libs, plugins = os.path.join(a.work, "libs"), os.path.join(a.work, "plugins")
    if not os.path.exists(os.path.join(a.work, ".complete")):
        sys.exit("connect.py: run `benches/connect/connect.sh setup` first")
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}.items():
        os.environ.setdefault(k, v)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    run_id = time.strftime("%H%M%S") + "_" + uuid.uuid4().hex[:6]
    name = f"w2c-iceberg-{run_id}"
    table = f"events_{run_id}"
    control = f"w2c-control-{run_id}"
    rundir = os.path.join(a.work, "runs", run_id)
    os.makedirs(rundir)

    s3 = boto3.client("s3", endpoint_url=a.endpoint, region_name=REGION)
    glue = boto3.client("glue", endpoint_url=a.endpoint, region_name=REGION)
    try:
        s3.create_bucket(Bucket=a.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    try:
        glue.create_database(DatabaseInput={"Name": a.database})
    except glue.exceptions.AlreadyExistsException:
        pass

    admin = AdminClient({"bootstrap.servers": a.brokers})
    md = admin.list_topics(timeout=10)
    if a.topic not in md.topics:
        sys.exit(f"connect.py: topic {a.topic} does not exist on {a.brokers}")
    nparts = len(md.topics[a.topic].partitions)
    for fut in admin.create_topics([NewTopic(control, num_partitions=1, replication_factor=1)]).values():
        fut.result()

    write_props(os.path.join(rundir, "worker.properties"), {
        "bootstrap.servers": a.brokers,
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "offset.storage.file.filename": os.path.join(rundir, "connect.offsets"),
        # The sink task handles the Iceberg coordinator's control events in put(), which an idle
        # worker calls once per offset-commit interval: Connect's default 60 s would add up to a
        # minute to the last commit. 1 s keeps the tail short.
        "offset.flush.interval.ms": "1000",
        "plugin.path": plugins,
        # ServiceLoader manifests only (every plugin here has them): the reflective scan of the
        # 114 MB plugin folder that the default hybrid_warn does costs ~12 s of startup CPU.
        "plugin.discovery": "service_load",
        "listeners": "http://127.0.0.1:0",
    })
    sink = {
        "name": name,
        "connector.class": "org.apache.iceberg.connect.IcebergSinkConnector",
        "tasks.max": str(a.tasks),
        "topics": a.topic,
        "consumer.override.auto.offset.reset": "earliest",
        "iceberg.tables": f"{a.database}.{table}",
        "iceberg.tables.auto-create-enabled": "true",
        "iceberg.tables.evolve-schema-enabled": "true",
        "iceberg.tables.schema-force-optional": "true",
        f"iceberg.tables.auto-create-props.write.parquet.compression-codec": a.compression,
        "iceberg.control.topic": control,
        "iceberg.control.commit.interval-ms": str(a.commit_interval_ms),
        "iceberg.catalog": "glue",
        "iceberg.catalog.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
        "iceberg.catalog.warehouse": f"s3://{a.bucket}/{run_id}",
        "iceberg.catalog.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        "iceberg.catalog.s3.endpoint": a.endpoint,
        "iceberg.catalog.s3.path-style-access": "true",
        "iceberg.catalog.s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
        "iceberg.catalog.s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"],
        "iceberg.catalog.glue.endpoint": a.endpoint,
        "iceberg.catalog.client.region": REGION,
        "iceberg.catalog.http-client.type": "urlconnection",
    }
    if not a.no_partition:
        sink.update({
            "transforms": "mpdate",
            "transforms.mpdate.type": "dev.sluice.bench.MpDate",
            "iceberg.tables.default-partition-by": "mp_date",
        })
    write_props(os.path.join(rundir, "sink.properties"), sink)
    with open(os.path.join(rundir, "log4j.properties"), "w") as f:
        f.write("log4j.rootLogger=INFO, file\n"
                "log4j.appender.file=org.apache.log4j.FileAppender\n"
                f"log4j.appender.file.File={rundir}/connect.log\n"
                "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
                "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n")

    cmd = ["java", *JVM_OPTS, f"-Dlog4j.configuration=file:{rundir}/log4j.properties",
           "-cp", os.path.join(libs, "*"), "org.apache.kafka.connect.cli.ConnectStandalone",
           os.path.join(rundir, "worker.properties"), os.path.join(rundir, "sink.properties")]
    log(f"run {run_id}: {a.events} events from {a.topic} ({nparts} partitions) -> "
        f"glue {a.database}.{table}, s3://{a.bucket}/{run_id}/")
    stdout = open(os.path.join(rundir, "stdout.log"), "w")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, cwd=rundir)

    logpath = os.path.join(rundir, "connect.log")
    logpos = 0
    started = None   # (wall, cpu) when the sink's consumer got its partitions
    done = None      # (wall, cpu, hwm) when the table holds every event
    records = 0
    last_poll = 0.0
    last_cpu = 0.0
    metadata_location = None
    errors = []
    while True:
        time.sleep(0.2)
        now = time.monotonic() - t0
        cpu = proc_cpu(p.pid)
        if cpu is not None:
            last_cpu = cpu
        if p.poll() is not None:
            errors.append(f"worker exited with {p.returncode}")
            break
        if os.path.exists(logpath):
            with open(logpath, errors="replace") as f:
                f.seek(logpos)
                chunk = f.read()
                logpos = f.tell()
            for line in chunk.splitlines():
                if started is None and "Adding newly assigned partitions" in line and a.topic in line:
                    started = (now, last_cpu)
                    log(f"consuming after {now:.1f}s wall, {last_cpu:.1f}s CPU")
                if " ERROR " in line and len(errors) < 5:
                    errors.append(line[:400])
        if now - last_poll >= 0.5:
            last_poll = now
            try:
                t = glue.get_table(DatabaseName=a.database, Name=table)["Table"]
                loc = t.get("Parameters", {}).get("metadata_location")
                if loc and loc != metadata_location:
                    metadata_location = loc
                    bucket, key = loc.split("://", 1)[1].split("/", 1)
                    meta = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                    cur = meta.get("current-snapshot-id")
                    snap = next((s for s in meta.get("snapshots", []) if s["snapshot-id"] == cur), None)
                    if snap:
                        records = int(snap["summary"].get("total-records", 0))
                        log(f"{now:6.1f}s: snapshot with {records} records ({last_cpu:.1f}s CPU)")
            except glue.exceptions.EntityNotFoundException:
                pass
            if records >= a.events:
                done = (now, last_cpu, proc_status(p.pid, "VmHWM"))
                break
        if errors and any("exited" in e for e in errors):
            break
        if now > a.timeout:
            errors.append(f"timeout after {a.timeout}s with {records} records")
            break

    hwm = proc_status(p.pid, "VmHWM")
    if not a.keep and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    stdout.close()

    # What is on S3 and how the Glue table looks.
    objs = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=a.bucket, Prefix=f"{run_id}/"):
        objs += page.get("Contents", [])
    data = [o for o in objs if o["Key"].endswith(".parquet") and "/data/" in o["Key"]]
    dates = sorted({k.split("mp_date=")[1].split("/")[0] for k in (o["Key"] for o in data) if "mp_date=" in k})
    rows = None
    try:
        import pyarrow.parquet as pq
        import pyarrow.fs as pafs
        fs = pafs.S3FileSystem(endpoint_override=a.endpoint, region=REGION, scheme="http",
                               access_key="testing", secret_key="testing")
        rows = sum(pq.ParquetFile(fs.open_input_file(f"{a.bucket}/{o['Key']}")).metadata.num_rows for o in data)
    except Exception as e:  # noqa: BLE001 - the count is a check, not the measure
        errors.append(f"row count: {e}")
    try:
        gt = glue.get_table(DatabaseName=a.database, Name=table)["Table"]
        glue_cols = len(gt.get("StorageDescriptor", {}).get("Columns", []))
        glue_type = gt.get("Parameters", {}).get("table_type")
    except Exception:  # noqa: BLE001
        glue_cols, glue_type = None, None

    out = {
        "peer": "kafka-connect-4.3.1+iceberg-sink-1.12.0",
        "run": run_id, "topic": a.topic, "partitions": nparts, "events": a.events,
        "tasks": a.tasks, "commit_interval_ms": a.commit_interval_ms,
        "partitioned_by": None if a.no_partition else "mp_date",
        "ok": done is not None and not [e for e in errors if "exited" in e or "timeout" in e],
        "records_in_table": records, "parquet_rows_on_s3": rows,
        "data_files": len(data), "data_bytes": sum(o["Size"] for o in data),
        "objects": len(objs), "dates": dates, "glue_table_type": glue_type, "glue_columns": glue_cols,
        "startup_wall_s": round(started[0], 2) if started else None,
        "startup_cpu_s": round(started[1], 2) if started else None,
        "errors": errors, "rundir": rundir,
    }
    if done:
        wall, cpu, hwm_done = done
        out.update({
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "peak_rss_mib": round(hwm_done or hwm or 0, 1),
            "events_per_s": round(a.events / wall, 1),
            "events_per_cpu_s": round(a.events / cpu, 1) if cpu else None,
        })
        if started:
            w, c = wall - started[0], cpu - started[1]
            out.update({"steady_wall_s": round(w, 2), "steady_cpu_s": round(c, 2),
                        "steady_events_per_s": round(a.events / w, 1) if w > 0 else None,
                        "steady_events_per_cpu_s": round(a.events / c, 1) if c > 0 else None})
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
