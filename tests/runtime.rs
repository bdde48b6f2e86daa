//! The runtime seen from outside: rolls on age fire without new events, and the Prometheus
//! endpoint reports per-operator rows, files, bytes and dead letters.

mod common;
use common::*;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn age_roll_commits_without_new_events_and_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    gen(&input, 40, 3, 0.0);
    let mut lines = std::fs::read_to_string(&input).unwrap();
    lines.push_str("{not json\n");
    let port = free_port();
    let mut child = sluice()
        .args([
            "run",
            "topologies/quickstart.yaml",
            "--no-progress",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--set",
            "sources.events.path=-",
            "--set",
            "sinks.lake.roll.max_age=300ms",
        ])
        .args(lake_sets(dir.path()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();

    // The input stays open and nothing new arrives: the age roll alone must commit.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let csv = try_query_csv(
            "topologies/quickstart.yaml",
            dir.path(),
            "SELECT count(*) FROM mp_master_event",
        )
        .unwrap_or_default();
        if csv.lines().nth(1) == Some("40") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no commit while the input stayed open: {csv}"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(100));
    }

    let m = http_get(port, "/metrics");
    assert_eq!(
        metric(&m, "sluice_operator_events_in_total", "operator=\"clean\""),
        Some(40.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sluice_operator_events_out_total", "operator=\"dates\""),
        Some(40.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sluice_sink_rows_total", "table=\"mp_master_event\""),
        Some(40.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "sluice_dead_letters_total", "sink=\"lake\""),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(&m, "sluice_sink_files_total", "sink=\"lake\"").unwrap_or(0.0) >= 2.0,
        "{m}"
    );
    assert!(
        metric(&m, "sluice_sink_bytes_total", "sink=\"lake\"").unwrap_or(0.0) > 1000.0,
        "{m}"
    );

    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("events read      41 lines"), "{summary}");
    assert!(summary.contains("dead letters     1"), "{summary}");
}

/// `runtime.workers: 1` (the default on two cores) runs a file source's whole chain (decoder,
/// operators and sink) on the sink's thread; several workers decode in parallel and put the
/// batches back in order. Either way the lake holds the same rows in the same columns, in the
/// same order of columns, and the same dead letters.
#[test]
fn one_worker_or_several_write_the_same_lake() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    gen(&input, 20_000, 11, 0.03);
    let lines_in = std::fs::read_to_string(&input).unwrap().lines().count();
    let mut lakes = Vec::new();
    // 0 is the default (one worker on two cores, more on more); 2 and 3 decode in parallel
    // whatever the machine. "1 small" has row groups of 16 KiB: a batch's runs of events for a
    // day are then cut where a row group fills, within a run and between runs.
    for workers in ["1", "0", "2", "3", "1 small"] {
        let d = dir.path().join(format!("w{}", workers.replace(' ', "-")));
        let small = workers.ends_with("small");
        let group = if small { "16KiB" } else { "32MiB" };
        run_ok(
            sluice()
                .args(["run", "topologies/quickstart.yaml", "--no-progress"])
                .args(["--set", &format!("sources.events.path={}", input.display())])
                .args(["--set", &format!("runtime.workers={}", &workers[..1])])
                .args(["--set", &format!("sinks.lake.roll.row_group_size={group}")])
                .args(lake_sets(&d)),
        );
        if small {
            let groups: usize = parquet_footers(&d.join("lake"))
                .iter()
                .map(|(_, m)| m.num_row_groups())
                .sum();
            assert!(
                groups >= 100,
                "{groups} row groups of 16 KiB for 20,000 events"
            );
        }
        let csv = query_csv(
            "topologies/quickstart.yaml",
            &d,
            "SELECT * FROM mp_master_event",
        );
        let mut lines = csv.lines();
        let header = lines.next().unwrap_or_default().to_string();
        let mut rows: Vec<String> = lines.map(str::to_string).collect();
        rows.sort();
        let mut dead: Vec<String> = dead_letters(&d.join("lake"))
            .iter()
            .map(|d| format!("{} {}", d["reason"], d["raw"]))
            .collect();
        dead.sort();
        let count = query_number(
            "topologies/quickstart.yaml",
            &d,
            "SELECT count(*) FROM mp_master_event",
        );
        assert!(
            count >= 19_000 && count as usize + dead.len() == lines_in,
            "workers {workers}: {count} rows, {} dead letters, {lines_in} lines",
            dead.len()
        );
        lakes.push((workers, header, rows, dead));
    }
    let (_, header, rows, dead) = &lakes[0];
    for (workers, h, r, d) in &lakes[1..] {
        assert_eq!(h, header, "columns with workers {workers} and 1");
        assert!(r == rows, "rows differ with workers {workers} and 1");
        assert!(
            d == dead,
            "dead letters differ with workers {workers} and 1"
        );
    }
}
