//! The quickstart: `sluice run topologies/quickstart.yaml`, then `sluice query`.

mod common;
use common::*;

#[test]
fn quickstart_lake_holds_every_valid_event_and_dead_letters_hold_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        sluice()
            .args(["run", "topologies/quickstart.yaml"])
            .args(lake_sets(dir.path())),
    );
    let text = stdout(&out);
    assert!(
        text.contains("next: sluice query topologies/quickstart.yaml"),
        "{text}"
    );

    // An independent reading of the sample decides what is valid.
    let lines = read_lines(&repo().join("topologies/sample/events.ndjson.gz"));
    assert!(lines.len() >= 2000, "the sample has {} lines", lines.len());
    let valid: Vec<String> = lines.iter().filter_map(|l| classify(l)).collect();
    let invalid: Vec<(usize, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| classify(l).is_none())
        .collect();
    assert!(!invalid.is_empty(), "the sample must hold invalid lines");

    let count = query_number(
        "topologies/quickstart.yaml",
        dir.path(),
        "SELECT count(*) FROM mp_master_event",
    );
    assert_eq!(count, valid.len() as u64);

    // Every $insert_id exactly once.
    let csv = query_csv(
        "topologies/quickstart.yaml",
        dir.path(),
        "SELECT mp_insert_id FROM mp_master_event ORDER BY mp_insert_id",
    );
    let mut got: Vec<&str> = csv.lines().skip(1).collect();
    let mut want: Vec<&str> = valid.iter().map(|s| s.as_str()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    // Dead letters: exactly the invalid lines, at their offsets, each with a reason.
    let dead = dead_letters(&dir.path().join("lake"));
    assert_eq!(dead.len(), invalid.len());
    let mut by_offset: Vec<(u64, String, String)> = dead
        .iter()
        .map(|d| {
            (
                d["offset"].as_u64().unwrap(),
                d["raw"].as_str().unwrap().to_string(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    by_offset.sort();
    for ((offset, raw, reason), (i, line)) in by_offset.iter().zip(&invalid) {
        assert_eq!(*offset, *i as u64);
        assert_eq!(raw, *line);
        assert!(!reason.is_empty());
    }
}

#[test]
fn partition_pruning_and_spec_queries_run_as_written() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        sluice()
            .args(["run", "topologies/quickstart.yaml"])
            .args(lake_sets(dir.path())),
    );
    let t = "topologies/quickstart.yaml";
    let all = query_number(t, dir.path(), "SELECT count(*) FROM mp_master_event");
    let per_day = query_csv(
        t,
        dir.path(),
        "SELECT mp_date, count(*) AS n FROM mp_master_event GROUP BY mp_date ORDER BY mp_date",
    );
    let days: Vec<(String, u64)> = per_day
        .lines()
        .skip(1)
        .map(|l| {
            let (d, n) = l.split_once(',').unwrap();
            (d.to_string(), n.parse().unwrap())
        })
        .collect();
    assert!(days.len() >= 3, "{per_day}");
    assert_eq!(days.iter().map(|(_, n)| n).sum::<u64>(), all);
    let (day, n) = &days[1];
    let one = query_number(
        t,
        dir.path(),
        &format!("SELECT count(*) FROM mp_master_event WHERE mp_date = '{day}'"),
    );
    assert_eq!(one, *n);
    let purchases = query_number(
        t,
        dir.path(),
        "SELECT count(*) FROM mp_master_event WHERE mp_event_name = 'Purchase'",
    );
    assert!(purchases > 0 && purchases < all);

    // The plan shows the pruning: one partition's files, not all of them.
    let explain = query_csv(
        t,
        dir.path(),
        &format!("EXPLAIN SELECT count(*) FROM mp_master_event WHERE mp_date = '{day}'"),
    );
    let files_in_plan = explain.matches(".parquet").count();
    let all_files = walk_parquet(&dir.path().join("lake")).len();
    assert!(files_in_plan >= 1 && files_in_plan < all_files, "{explain}");
}

fn walk_parquet(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_parquet(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_shipped_sample_is_the_generators_output() {
    // The sample is made by the project's own generator; regenerating it gives the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("events.ndjson");
    run_ok(sluice().args([
        "gen",
        "--events",
        "3000",
        "--seed",
        "42",
        "--bad-fraction",
        "0.02",
        "--days",
        "3",
        "--start",
        "1735689600",
        "-o",
        &p.display().to_string(),
    ]));
    let fresh = std::fs::read_to_string(&p).unwrap();
    let shipped = read_lines(&repo().join("topologies/sample/events.ndjson.gz")).join("\n") + "\n";
    assert!(
        fresh == shipped,
        "regenerate the sample: see topologies/sample/README.md"
    );
}
