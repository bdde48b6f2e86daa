#!/usr/bin/env python3
"""The issue's targets against the figures of one harness run: reads the JSON that w1.py,
w2.py and names.py wrote (benches/all.sh passes their paths) and prints each target, the
figure measured, and whether it was met.

    benches/targets.py W1.json W2.json W3.json
"""
import json
import statistics
import sys

W1_PER_CPU_S = 400_000
W1_OVER_DUCKDB = 5.0
W2_PER_CPU_S = 150_000
W2_SLACK_S = 5.0
# The cost of one more event may grow with names while a batch's values spread over more
# fragments; past 4,000 names (one value per fragment) it should level off: at most this much
# more from there to the largest N measured.
W3_LEVEL = 1.25
W3_FROM = 4000


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    w1, w2, w3 = (json.load(open(p)) for p in sys.argv[1:])
    rows = []

    def target(what, figure, met):
        rows.append((what, figure, met))

    by = {r["name"]: r for r in w1["rows"]}
    for name in ("sluice (messy)", "sluice (clean)"):
        v = by[name]["events_per_cpu_s"]
        target(f"W1 {name}: >= {W1_PER_CPU_S:,} events/CPU-s", f"{v:,}", v >= W1_PER_CPU_S)
    r = w1["ratio_per_cpu_s_vs_duckdb"]
    target(f"W1 sluice/DuckDB per CPU-s, same clean rows: >= {W1_OVER_DUCKDB}x", f"{r}x", r >= W1_OVER_DUCKDB)

    for t in w2["throughput"]:
        if t["name"].startswith("sluice"):
            v = t["events_per_cpu_s"]
            target(f"W2 {t['name']}: >= {W2_PER_CPU_S:,} events per sluice CPU-s", f"{v:,}", v >= W2_PER_CPU_S)
    for f in w2.get("freshness", []):
        if f["name"].startswith("sluice"):
            limit = f["window_s"] + W2_SLACK_S
            target(f"W2 {f['name']} p99 freshness <= window + {W2_SLACK_S:g} s ({limit:g} s)",
                   f"{f['p99_s']} s", f["p99_s"] <= limit)

    marg = {r["names"]: r["us_per_event_marginal"] for r in w3["rows"]}
    runs = {r["names"]: r.get("us_per_event_marginal_runs") for r in w3["rows"]}
    top = max(marg)
    if W3_FROM in marg and top > W3_FROM:
        if runs[top] and runs[W3_FROM]:
            # The ratio within each round (both measured within a minute), then its median.
            g = statistics.median(t / f for t, f in zip(runs[top], runs[W3_FROM]) if f > 0)
            how = "median of the rounds' ratios"
        else:
            g = marg[top] / marg[W3_FROM]
            how = "ratio of the medians"
        target(f"W3 cost of one more event, N={W3_FROM:,} -> N={top:,}: <= x{W3_LEVEL} (no events x names term)",
               f"{marg[W3_FROM]} -> {marg[top]} us (x{g:.2f}, {how})", g <= W3_LEVEL)

    width = max(len(w) for w, _, _ in rows)
    for what, figure, met in rows:
        print(f"{what:<{width}}  {figure:>28}  {'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
