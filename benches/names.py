#!/usr/bin/env python3
"""W3, distinct property names: how the cost of W1 (file -> the four operators -> local
Parquet + catalog, monoschema: every name a column of one table) grows with the number of
distinct property names, and with events at many names.

    benches/names.py                                   # needs target/release/sluice
    benches/names.py --events 200000 --names 0,1000,16000 --runs 1

Inputs come from `sluice gen --distinct-props N`: the default events plus three properties
per event drawn from N names (numbers and strings, so about 2N columns; past the table's
9,500-column limit the rest go into `mp_properties`, SPEC §12). For each N it runs the chain
over E events and follows the sluice process as it goes: every 20 ms its user+system CPU time
and the bytes it has read (both from /proc). The CPU time per event while it reads the middle
of its input (from a quarter to nine tenths of the bytes) is the cost of one more event at N
(marginal); the rest of the run's CPU time (start, the names' first sightings, the last
commit) is what the N names and the run cost once. Cost that grows with events times names
shows as a marginal cost per event rising in proportion to N; cost linear in each, as a
marginal cost that levels off as N grows.

Earlier versions took the marginal cost as the difference between runs over E and 2E events:
this machine's speed varies by 10-20% from one run to the next, and a difference of two such
runs varied by half from round to round. Within one run, the slope over millions of read bytes
does not subtract two independent errors.
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
from w1 import topology

ROOT = benchenv.ROOT


CLK = os.sysconf("SC_CLK_TCK")


def follow(cmd, size):
    """Runs cmd; returns (CPU seconds in all, CPU seconds per byte read between a quarter and
    nine tenths of `size` (a least-squares slope), peak RSS MiB)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = []
    while True:
        # wait4 without waiting: the child's own figures once it has exited (`poll` would reap
        # it without them).
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{p.pid}/io") as f:
                rchar = next(int(l.split()[1]) for l in f if l.startswith("rchar:"))
            samples.append((rchar, (int(fields[11]) + int(fields[12])) / CLK))
        except (OSError, StopIteration, IndexError, ValueError):
            # Exiting between wait4 and the reads: no sample this time.
            pass
        time.sleep(0.02)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err}")
    mid = [(x, y) for x, y in samples if size / 4 <= x <= size * 9 / 10]
    if len(mid) < 10:
        sys.exit(f"{len(mid)} samples in the middle of the input: give --events more")
    mx = statistics.fmean(x for x, _ in mid)
    my = statistics.fmean(y for _, y in mid)
    slope = sum((x - mx) * (y - my) for x, y in mid) / sum((x - mx) ** 2 for x, _ in mid)
    return ru.ru_utime + ru.ru_stime, slope, ru.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=800_000)
    ap.add_argument("--names", default="0,100,1000,4000,16000,64000",
                    help="distinct property names, comma-separated (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target/release/sluice"))
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    if not os.path.exists(a.sluice):
        sys.exit(f"no binary at {a.sluice}: cargo build --release (or pass --sluice)")
    names = [int(n) for n in a.names.split(",") if n.strip()]
    if not names:
        sys.exit("--names: give at least one number")
    work = tempfile.mkdtemp(prefix="sluice-names-")
    try:
        def gen(n, events):
            src = os.path.join(work, f"d{n}-{events}.ndjson")
            subprocess.run([a.sluice, "gen", "--events", str(events), "--seed", "1",
                            "--distinct-props", str(n), "-o", src],
                           check=True, stderr=subprocess.DEVNULL)
            return src

        def run(src, tag):
            d = os.path.join(work, tag)
            os.makedirs(d)
            r = follow([a.sluice, "run", topology(d, src, schema="monoschema"), "--no-progress"],
                       os.path.getsize(src))
            shutil.rmtree(d)
            return r

        # Every input is made first; then each round runs every N in turn. This machine's
        # speed drifts by tens of percent over minutes: the marginal costs of one round,
        # measured within a minute of each other, are compared with each other (the ratio to
        # the first N, per round, then its median), rather than medians taken minutes apart.
        inputs = {n: gen(n, a.events) for n in names}
        per_event = {n: os.path.getsize(inputs[n]) / a.events for n in names}
        runs = {n: [] for n in names}
        for i in range(a.runs):
            for n in names:
                runs[n].append(run(inputs[n], f"r{n}-{i}"))
            print(f"round {i + 1} of {a.runs}: " + ", ".join(
                f"N={n:,} {runs[n][i][1] * per_event[n] * 1e6:.2f}" for n in names)
                + " us per more event", flush=True)
        for src in inputs.values():
            os.remove(src)
        marg = {n: [r[1] * per_event[n] * 1e6 for r in runs[n]] for n in names}
        rows = []
        for n in names:
            cpu = statistics.median(r[0] for r in runs[n])
            marginal = statistics.median(marg[n])
            fixed = cpu - marginal * a.events / 1e6
            # Per round, this N's marginal cost over the first N's (the same minute).
            ratio = statistics.median(m / b for m, b in zip(marg[n], marg[names[0]]) if b > 0)
            r = {"names": n, "events": a.events, "cpu_s": round(cpu, 3),
                 "us_per_event_marginal": round(marginal, 2), "fixed_cpu_s": round(fixed, 2),
                 "us_per_event_marginal_runs": [round(m, 3) for m in marg[n]],
                 "peak_rss_mib": round(max(r[2] for r in runs[n]))}
            rows.append(r)
            print(f"N={n:>7,}  {cpu:>6.2f} CPU-s for {a.events:,} events: {marginal:>5.2f} us per more "
                  f"event (x{ratio:.2f} N={names[0]:,}'s in the same round), {fixed:>5.2f} CPU-s "
                  f"once  {r['peak_rss_mib']:>5} MiB peak  (medians of {a.runs})", flush=True)
        for lo in sorted({names[0], 4000} & set(names[:-1])):
            ratio = statistics.median(m / b for m, b in zip(marg[names[-1]], marg[lo]) if b > 0)
            print(f"from N={lo:,} to N={names[-1]:,} names, the cost of one more event is "
                  f"x{ratio:.2f} (median of the rounds' ratios)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"rows": rows}, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
