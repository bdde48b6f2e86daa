#!/usr/bin/env python3
"""W1, transform + encode: NDJSON file -> clean-name, stringify-nested, type-infer,
partition-by-date -> local Parquet (Snappy) with the embedded catalog; DuckDB beside it.

    benches/w1.py --events 1000000 --runs 3            # needs target/release/sluice
    benches/w1.py --sluice target/debug/sluice --events 100000 --runs 1

For each run it measures, from the OS (wait4), the wall time, the user+system CPU time and
the peak RSS of the measured process, and prints medians: events/s, MB/s of input, events per
CPU-second, peak RSS. Inputs come from `sluice gen` (default settings, messy) and from
`sluice gen --clean` (the peer cannot read the messy names: DuckDB rejects `Duplicate name`).
DuckDB (the Python package, installed into .venv when missing) converts the clean NDJSON to Parquet
partitioned by mp_date in one process of its own; it does no name cleaning and keeps no
catalog, so it does less work than sluice does. sluice runs twice over: with the default
runtime (one decoder per core but the sink's: on two cores the whole chain runs on the sink's
thread, the least CPU per event) and with `runtime.workers: 2` (two decoders, batches put back
in order: less wall time, more CPU per event).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchenv

ROOT = benchenv.ROOT


def ensure_duckdb(python):
    """The peer's Python: `python` if given, else .venv's, made and given DuckDB
    (benches/requirements.txt) when missing."""
    if python:
        return python
    py = benchenv.make()
    if subprocess.run([py, "-c", "import duckdb"], capture_output=True).returncode != 0:
        benchenv.install()
    return py

DUCKDB = r"""
import sys, duckdb
src, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f'''
COPY (
  SELECT *, strftime(to_timestamp(CASE WHEN properties.time > 1e11 THEN properties.time / 1000
                                        ELSE properties.time END), '%Y-%m-%d') AS mp_date
  FROM read_ndjson_auto('{src}', maximum_object_size=10485760, sample_size=-1)
) TO '{out}' (FORMAT PARQUET, PARTITION_BY (mp_date), COMPRESSION SNAPPY)
''')
"""


def measure(cmd, **kw):
    """Runs cmd; returns (wall seconds, cpu seconds, peak RSS MiB) from the OS."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def topology(dirpath, src, workers=0, schema=None):
    """W1's topology over `src`, its lake and catalog in `dirpath`; `schema` sets type-infer's
    (monoschema or multischema) when given."""
    t = {
        "sources": {"events": {"type": "file", "path": src}},
        "operators": {
            "clean": {"type": "clean-name", "inputs": ["events"]},
            "nested": {"type": "stringify-nested", "inputs": ["clean"]},
            "types": {"type": "type-infer", "inputs": ["nested"]},
            "dates": {"type": "partition-by-date", "inputs": ["types"], "timezone": "UTC"},
        },
        "sinks": {"lake": {
            "type": "lake", "inputs": ["dates"], "project_id": 1, "compression": "snappy",
            "store": {"type": "local", "path": os.path.join(dirpath, "lake")},
            "catalog": {"type": "local", "path": os.path.join(dirpath, "catalog.sqlite"), "database": "bench"},
            "roll": {"max_age": "10m"},
        }},
        "runtime": {"workers": workers},
    }
    if schema:
        t["operators"]["types"]["schema"] = schema
    p = os.path.join(dirpath, "t.yaml")
    with open(p, "w") as f:
        json.dump(t, f)
    return p


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
          f"(median of {len(runs)}; wall {wall:.2f} s, cpu {cpu:.2f} s)")
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target/release/sluice"))
    ap.add_argument("--python", default=None, help="a Python with duckdb (default: .venv's)")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    if not os.path.exists(a.sluice):
        sys.exit(f"no binary at {a.sluice}: cargo build --release (or pass --sluice)")
    py = ensure_duckdb(a.python)
    work = tempfile.mkdtemp(prefix="sluice-w1-")
    try:
        inputs = {}
        for kind, extra in [("messy", []), ("clean", ["--clean"])]:
            path = os.path.join(work, f"{kind}.ndjson")
            subprocess.run([a.sluice, "gen", "--events", str(a.events), "--seed", "1", *extra, "-o", path],
                           check=True, stderr=subprocess.DEVNULL)
            inputs[kind] = path
        # The inputs' pages written back before anything is timed (else the first runs pay
        # for the kernel's writeback of a gigabyte and a half).
        os.sync()
        # The default and `runtime.workers: 2` (two decoders, re-ordered: on two cores more
        # CPU per event, less wall time), and DuckDB: each once per round, round after round
        # (this machine's speed drifts by 15% within an hour: a block of runs per command
        # compared hours, not commands).
        configs = [(kind, workers, label) for workers, label in [(0, ""), (2, ", workers: 2")]
                   for kind in ["messy", "clean"]]
        runs = {c: [] for c in configs}
        duck_runs = []
        # Each round starts one command further on, so that no command always follows the
        # same one (DuckDB's 20 CPU-seconds on both cores, say).
        order = configs + ["duckdb"]
        for i in range(a.runs):
            print(f"round {i + 1} of {a.runs}", file=sys.stderr, flush=True)
            k = i % len(order)
            for c in order[k:] + order[:k]:
                if c == "duckdb":
                    out = os.path.join(work, f"duck-{i}")
                    duck_runs.append(measure([py, "-c", DUCKDB, inputs["clean"], out]))
                    shutil.rmtree(out, ignore_errors=True)
                    continue
                kind, workers, _ = c
                d = os.path.join(work, f"s-{kind}-{workers}-{i}")
                os.makedirs(d)
                runs[c].append(measure([a.sluice, "run", topology(d, inputs[kind], workers), "--no-progress"]))
                shutil.rmtree(d)
        rows = [report(f"sluice ({kind}{label})", runs[(kind, workers, label)], a.events,
                       os.path.getsize(inputs[kind])) for kind, workers, label in configs]
        duck = report("duckdb (clean)", duck_runs, a.events, os.path.getsize(inputs["clean"]))
        rows.append(duck)
        ratio = rows[1]["events_per_cpu_s"] / duck["events_per_cpu_s"]
        ratio_two = rows[3]["events_per_cpu_s"] / duck["events_per_cpu_s"]
        print(f"sluice/duckdb per CPU-second on the same clean rows: {ratio:.2f}x "
              f"({ratio_two:.2f}x with workers: 2)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"rows": rows, "ratio_per_cpu_s_vs_duckdb": round(ratio, 2),
                           "ratio_per_cpu_s_vs_duckdb_workers_2": round(ratio_two, 2)}, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
