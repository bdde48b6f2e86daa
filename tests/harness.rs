//! The performance harness (`benches/`) runs end to end on a few events: W1 beside DuckDB, W2
//! on the suite's broker and S3 + Glue endpoint beside the Python consumer and Kafka Connect,
//! and W3's per-round marginal costs. Figures are not judged here (speed is measured by the
//! harness itself, on a release build); what is checked is that every figure the reports
//! promise is there, for every command, and comes from a run that did its work.

mod common;
use common::*;

use std::process::Command;

fn harness(script: &str, args: &[&str], json: &std::path::Path) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(repo().join("benches").join(script))
        .args(args)
        .args(["--sluice", env!("CARGO_BIN_EXE_sluice"), "--json"])
        .arg(json)
        .current_dir(repo())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(json).expect("the harness wrote its JSON"))
        .expect("JSON")
}

/// Every row reports, for all its events, the figures the harness promises for throughput.
fn throughput_figures(rows: &[serde_json::Value], events: u64) {
    for r in rows {
        assert_eq!(r["events"], events, "{r}");
        for figure in [
            "events_per_s",
            "mb_per_s",
            "events_per_cpu_s",
            "cpu_s",
            "peak_rss_mib",
        ] {
            assert!(r[figure].as_f64().unwrap() > 0.0, "{figure}: {r}");
        }
    }
}

#[test]
fn w1_reports_every_figure_for_sluice_and_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--events", "3000", "--runs", "1"];
    let python = std::env::var("SLUICE_PYTHON").ok();
    if let Some(p) = &python {
        args.extend(["--python", p]);
    }
    let w1 = harness("w1.py", &args, &dir.path().join("w1.json"));
    let rows = w1["rows"].as_array().expect("rows");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.iter().filter(|n| n.starts_with("sluice")).count() == 4);
    assert!(names.iter().any(|n| n.starts_with("duckdb")));
    throughput_figures(rows, 3000);
    assert!(w1["ratio_per_cpu_s_vs_duckdb"].as_f64().unwrap() > 0.0);
}

#[test]
fn w3_reports_the_marginal_cost_of_every_round_for_every_name_count() {
    let dir = tempfile::tempdir().unwrap();
    let w3 = harness(
        "names.py",
        &["--events", "100000", "--names", "0,100", "--runs", "2"],
        &dir.path().join("w3.json"),
    );
    let rows = w3["rows"].as_array().expect("rows");
    let names: Vec<u64> = rows.iter().map(|r| r["names"].as_u64().unwrap()).collect();
    assert_eq!(names, [0, 100]);
    for r in rows {
        let runs = r["us_per_event_marginal_runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 2, "{r}");
        assert!(runs.iter().all(|m| m.as_f64().unwrap() > 0.0), "{r}");
        assert!(r["cpu_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0, "{r}");
    }
}

/// W2 on the suite's broker and S3 + Glue endpoint: sluice (messy and clean input) beside each
/// of its peers, the Python consumer, Kafka Connect (whose jars the harness fetches itself) and
/// the Go consumer on Redpanda Connect's libraries (which the harness builds with `go build`),
/// each checked by the harness against the input through what it wrote, then a short freshness
/// phase for sluice, the Python peer and the Go peer.
#[test]
fn w2_reports_every_figure_for_sluice_and_every_peer() {
    let Some(brokers) = service(
        "SLUICE_KAFKA_BROKERS",
        "SLUICE_REQUIRE_KAFKA",
        "Kafka broker",
    ) else {
        return;
    };
    let Some(endpoint) = service(
        "SLUICE_AWS_ENDPOINT",
        "SLUICE_REQUIRE_AWS",
        "S3 + Glue endpoint",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w2 = harness(
        "w2.py",
        &[
            "--events",
            "2000",
            "--runs",
            "1",
            "--peers",
            "python,connect,go",
            "--live-seconds",
            "4",
            "--rate",
            "500",
            "--max-age",
            "3",
            "--connect-commit-ms",
            "2000",
            "--brokers",
            &brokers,
            "--endpoint",
            &endpoint,
        ],
        &dir.path().join("w2.json"),
    );
    let rows = w2["throughput"].as_array().expect("throughput rows");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "sluice (messy)",
            "sluice (clean)",
            "python (clean)",
            "connect (clean)",
            "connect (clean, excl. start)",
            "go (clean)"
        ]
    );
    throughput_figures(rows, 2000);
    // What each side wrote was read back and matched, event by event, against the input (the
    // harness exits non-zero on any difference); here is how many rows it read.
    for (name, key) in [
        ("sluice (messy)", "rows_checked_through_glue"),
        ("sluice (clean)", "rows_checked_through_glue"),
        ("python (clean)", "rows_checked_through_glue"),
        ("connect (clean)", "rows_checked_in_iceberg_data_files"),
        ("go (clean)", "rows_checked_in_s3_objects"),
    ] {
        let r = rows.iter().find(|r| r["name"] == name).unwrap();
        assert_eq!(r[key], 2000, "{key}: {r}");
    }
    let ratios = &w2["ratios_sluice_over_peer"];
    for peer in ["python", "connect", "connect excl. start", "go"] {
        for figure in [
            "events_per_s",
            "mb_per_s",
            "events_per_cpu_s",
            "peak_rss_mib",
        ] {
            assert!(
                ratios[peer][figure].as_f64().unwrap() > 0.0,
                "{peer} {figure}: {ratios}"
            );
        }
    }
    for peer in ["python", "go"] {
        for figure in ["freshness_p50", "freshness_p99"] {
            assert!(
                ratios[peer][figure].as_f64().unwrap() > 0.0,
                "{peer} {figure}: {ratios}"
            );
        }
    }
    let live = w2["freshness"].as_array().expect("freshness rows");
    let live_names: Vec<&str> = live.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        live_names,
        ["sluice (messy)", "python (clean)", "go (clean)"]
    );
    for r in live {
        // Every valid event produced became readable: through a registered Glue partition, or
        // for the Go peer (which registers none) in an object under its S3 prefix.
        assert_eq!(r["visible"], r["events"], "{r}");
        let (p50, p99) = (r["p50_s"].as_f64().unwrap(), r["p99_s"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99, "{r}");
        assert!(r["events_per_cpu_s"].as_f64().unwrap() > 0.0, "{r}");
    }
}
