#!/usr/bin/env python3
"""W3, distinct property names: how the cost of W1 (file -> the four operators -> local
Parquet + catalog, monoschema: every name a column of one table) grows with the number of
distinct property names, and with events at many names.

    benches/names.py                                   # needs target/release/sluice
    benches/names.py --events 100000 --names 0,1000,16000 --runs 1

Inputs come from `sluice gen --distinct-props N`: the default events plus three properties
per event drawn from N names (numbers and strings, so about 2N columns; past the table's
9,500-column limit the rest go into `mp_properties`, SPEC §12). For each N it runs E and 2E
events and prints the median user+system CPU time of the sluice process (from the OS) for
each; the difference is the cost of one more event at N (marginal), the rest the cost of the
N names themselves (catalog columns, first values). Cost that grows with events times names
shows as a marginal cost per event rising in proportion to N; cost linear in each, as a
marginal cost that levels off as N grows and a cost of the names that grows with N.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import benchenv
from w1 import measure, topology

ROOT = benchenv.ROOT


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--names", default="0,100,1000,4000,16000,64000",
                    help="distinct property names, comma-separated (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=3)
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
            r = measure([a.sluice, "run", topology(d, src, schema="monoschema"), "--no-progress"])
            shutil.rmtree(d)
            return r

        # Per N, E and 2E events, run by turns (this machine's speed drifts; a pair's
        # difference is what events cost at N, the marginal cost per event); the rest of the
        # cost at E is what N costs once (the catalog's columns, each file's column chunks).
        rows = []
        for n in names:
            one, two = gen(n, a.events), gen(n, 2 * a.events)
            pairs = [(run(one, f"a{n}-{i}"), run(two, f"b{n}-{i}")) for i in range(a.runs)]
            os.remove(one)
            os.remove(two)
            cpu1 = statistics.median(p[0][1] for p in pairs)
            cpu2 = statistics.median(p[1][1] for p in pairs)
            marginal = statistics.median((p[1][1] - p[0][1]) for p in pairs) / a.events * 1e6
            fixed = cpu1 - marginal * a.events / 1e6
            r = {"names": n, "cpu_s": round(cpu1, 3), "cpu_s_twice_the_events": round(cpu2, 3),
                 "us_per_event_marginal": round(marginal, 2), "fixed_cpu_s": round(fixed, 2),
                 "peak_rss_mib": round(max(max(p[0][2], p[1][2]) for p in pairs))}
            rows.append(r)
            print(f"N={n:>6}  {cpu1:>6.2f} CPU-s for {a.events:,} events, {cpu2:>6.2f} "
                  f"for {2 * a.events:,}: {marginal:>5.2f} us per more event, {fixed:>5.2f} CPU-s "
                  f"for the names  {r['peak_rss_mib']:>5} MiB peak  (medians of {a.runs})", flush=True)
        if len(rows) > 1:
            lo, hi = rows[0], rows[-1]
            print(f"from N={lo['names']:,} to N={hi['names']:,} names, the cost of one more event is "
                  f"x{hi['us_per_event_marginal'] / lo['us_per_event_marginal']:.2f}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"rows": rows}, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
