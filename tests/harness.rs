//! The performance harness (`benches/`) runs end to end on a few events: W1 beside DuckDB, and
//! W3's per-round marginal costs. Figures are not judged here (speed is measured by the
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
    for r in rows {
        assert_eq!(r["events"], 3000, "{r}");
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
