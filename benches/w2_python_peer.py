#!/usr/bin/env python3
"""W2's do-it-yourself peer: a plain Python consumer (confluent-kafka + pyarrow + boto3) doing
what someone writing their own Kafka -> Parquet-on-S3 + Glue job reasonably does.

    w2_python_peer.py --brokers B --topic T --group G --endpoint URL --bucket B --database D \
        [--until-end] [--batch-rows 50000] [--flush-seconds 10]

A consumer in group G (earliest, no auto-commit) reads batches of messages; each batch is parsed
with `json`, `properties` flattened into columns (nested values as JSON text, integers as doubles,
`time` as TIMESTAMP(MICROS, UTC), `distinct_id` as a string even when it comes as a number,
`mp_date` from `time` in UTC), cut per `mp_date` and written as
one Snappy Parquet object per date with boto3 (SSE AES256, like the sluice topology); the Glue
table is created on first sight and its columns appended when new ones appear (before the
objects), new partitions are registered with BatchCreatePartition (after the objects), then the
offsets are committed. At least once: a crash between the objects and the commit duplicates rows.

What it does not do (the input must be `sluice gen --clean`): Mixpanel's name cleaning (only a
naive `$x` -> `mp_x`, lower case, other characters -> `_`, no collision handling), `_string` /
`_number` columns on type conflicts, dead letters, the schema map, exactly-once commits.

With --until-end it stops once every partition reaches the end offset it had at start (the
throughput phase); without, it runs until SIGTERM/SIGINT, then flushes and commits (the live
phase). Prints one JSON summary on stdout.
"""
import argparse
import io
import json
import signal
import sys
import time
import uuid

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, TopicPartition

from benchenv import naive_column  # benches/benchenv.py

REGION = "us-east-1"
PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
GLUE_TYPES = {"string": "string", "double": "double", "bool": "boolean", "int64": "bigint",
              "timestamp[us, tz=UTC]": "timestamp"}

_names = {}


def clean(name):
    """A naive SQL-friendly name: not Mixpanel's rules."""
    n = _names.get(name)
    if n is None:
        n = _names[name] = naive_column(name)
    return n


def flatten(value):
    e = json.loads(value)
    p = e.get("properties") or {}
    row = {"mp_event_name": e.get("event")}
    for k, v in p.items():
        if k == "time":
            t = float(v)
            row["time"] = int((t / 1000 if t > 1e11 else t) * 1_000_000)
        elif k == "distinct_id":
            row[k] = None if v is None else str(v)  # ints too in the generated input
        elif isinstance(v, (dict, list)):
            row[clean(k)] = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
        else:
            row[clean(k)] = v
    return row


def to_table(values):
    arr = pa.array([flatten(v) for v in values])
    t = pa.Table.from_batches([pa.RecordBatch.from_struct_array(arr)])
    cols = []
    for name, col in zip(t.column_names, t.columns):
        if name == "time":
            col = col.cast(pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        elif pa.types.is_integer(col.type):
            col = col.cast(pa.float64())
        elif pa.types.is_null(col.type):
            col = col.cast(pa.string())
        cols.append(col)
    t = pa.table(cols, names=t.column_names)
    return t.append_column("mp_date", pc.strftime(t["time"], format="%Y-%m-%d"))


class Lake:
    def __init__(self, a):
        kw = dict(endpoint_url=a.endpoint, region_name=REGION)
        self.s3 = boto3.client("s3", **kw)
        self.glue = boto3.client("glue", **kw)
        self.a = a
        self.location = f"s3://{a.bucket}/{a.prefix}/{a.table}/"
        self.columns = None  # [(name, glue type)] as Glue has them
        self.partitions = set()
        self.files = 0
        self.rows = 0

    def _table_input(self, columns):
        return {
            "Name": self.a.table, "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
            "PartitionKeys": [{"Name": "mp_date", "Type": "string"}],
            "StorageDescriptor": {"Columns": [{"Name": n, "Type": ty} for n, ty in columns],
                                  "Location": self.location, **PARQUET},
        }

    def _ensure_columns(self, schema):
        if self.columns is None:
            try:
                t = self.glue.get_table(DatabaseName=self.a.database, Name=self.a.table)["Table"]
                self.columns = [(c["Name"], c["Type"]) for c in t["StorageDescriptor"]["Columns"]]
            except self.glue.exceptions.EntityNotFoundException:
                self.columns = []
        known = {n for n, _ in self.columns}
        new = [(f.name, GLUE_TYPES.get(str(f.type), "string")) for f in schema
               if f.name != "mp_date" and f.name not in known]
        if not new:
            return
        if not self.columns:
            self.glue.create_table(DatabaseName=self.a.database, TableInput=self._table_input(new))
        else:
            self.glue.update_table(DatabaseName=self.a.database,
                                   TableInput=self._table_input(self.columns + new))
        self.columns = self.columns + new

    def write(self, values):
        t = to_table(values)
        self._ensure_columns(t.schema)
        dates = t["mp_date"]
        for d in pc.unique(dates).to_pylist():
            part = t.filter(pc.equal(dates, d)).drop_columns(["mp_date"])
            buf = io.BytesIO()
            pq.write_table(part, buf, compression="snappy")
            key = f"{self.a.prefix}/{self.a.table}/mp_date={d}/part-{uuid.uuid4().hex}.parquet"
            self.s3.put_object(Bucket=self.a.bucket, Key=key, Body=buf.getvalue(),
                               ServerSideEncryption="AES256")
            self.files += 1
        new = sorted(set(pc.unique(dates).to_pylist()) - self.partitions)
        for i in range(0, len(new), 100):
            r = self.glue.batch_create_partition(
                DatabaseName=self.a.database, TableName=self.a.table,
                PartitionInputList=[{"Values": [d], "StorageDescriptor": {
                    "Columns": [{"Name": n, "Type": ty} for n, ty in self.columns],
                    "Location": f"{self.location}mp_date={d}/", **PARQUET}} for d in new[i:i + 100]])
            errors = [e for e in r.get("Errors", [])
                      if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"]
            if errors:
                raise RuntimeError(f"BatchCreatePartition: {errors}")
        self.partitions.update(new)
        self.rows += t.num_rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--endpoint", default=None)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--table", default="mp_master_event")
    ap.add_argument("--prefix", default="peer")
    ap.add_argument("--batch-rows", type=int, default=50_000)
    ap.add_argument("--flush-seconds", type=float, default=10.0)
    ap.add_argument("--until-end", action="store_true")
    a = ap.parse_args()

    stop = []
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.append(1))
    c = Consumer({"bootstrap.servers": a.brokers, "group.id": a.group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    ends = {}
    if a.until_end:
        meta = c.list_topics(a.topic, timeout=30).topics[a.topic]
        for p in meta.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(a.topic, p), timeout=30)
            if hi > lo:
                ends[p] = hi
    c.subscribe([a.topic])
    lake = Lake(a)
    pos, buf, oldest, messages = {}, [], None, 0

    def caught_up():
        return all(pos.get(p, -1) >= hi for p, hi in ends.items())

    def flush():
        nonlocal buf, oldest
        if buf:
            lake.write(buf)
            c.commit(asynchronous=False)
        buf, oldest = [], None

    while not stop and not (a.until_end and caught_up()):
        for m in c.consume(num_messages=5000, timeout=0.2):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(m.error())
            if oldest is None:
                oldest = time.monotonic()
            buf.append(m.value())
            pos[m.partition()] = m.offset() + 1
            messages += 1
        if len(buf) >= a.batch_rows or (buf and time.monotonic() - oldest >= a.flush_seconds):
            flush()
    flush()
    c.close()
    print(json.dumps({"messages": messages, "rows": lake.rows, "files": lake.files,
                      "partitions": len(lake.partitions)}))


if __name__ == "__main__":
    sys.exit(main())
