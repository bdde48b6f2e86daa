//! Independent readers: pyarrow and DuckDB read every file written, and each file's column
//! types agree with the catalog.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

/// The Python with pyarrow and DuckDB that the test command installs (`scripts/test.sh`).
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with pyarrow: run the suite with scripts/test.sh, which installs it, or set SLUICE_PYTHON"
    );
    venv
}

fn check(dir: &std::path::Path, database: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo().join("tests/python/check_lake.py"))
        .arg(dir.join("lake"))
        .arg(dir.join("catalog.sqlite"))
        .arg(database)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the independent reader failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pyarrow_and_duckdb_read_every_file_with_the_catalogs_types() {
    let dir = tempfile::tempdir().unwrap();
    // Small files and frequent commits: many files, and columns added between them.
    let out = run_ok(
        sluice()
            .args([
                "run",
                "topologies/quickstart.yaml",
                "--set",
                "runtime.batch_size=200",
            ])
            .args(["--set", "sinks.lake.roll.max_file_size=16KiB"])
            .args(lake_sets(dir.path())),
    );
    let report = check(dir.path(), "quickstart");
    let rows = query_number(
        "topologies/quickstart.yaml",
        dir.path(),
        "SELECT count(*) FROM mp_master_event",
    );
    assert_eq!(report["rows"].as_u64(), Some(rows), "{report}");
    assert_eq!(report["duckdb_rows"].as_u64(), Some(rows), "{report}");
    assert!(
        report["files"].as_u64().unwrap() > 10,
        "{report} {}",
        stdout(&out)
    );
}

#[test]
fn multischema_tables_read_back_too() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let cat = dir.path().join("catalog.sqlite");
    run_ok(sluice().args(["run", "topologies/two-tables.yaml"]).args([
        "--set".to_string(),
        format!("sinks.lake.store.path={}", lake.display()),
        "--set".to_string(),
        format!("sinks.lake.catalog.path={}", cat.display()),
        "--set".to_string(),
        format!("sinks.per_event.store.path={}", lake.display()),
        "--set".to_string(),
        format!("sinks.per_event.catalog.path={}", cat.display()),
    ]));
    let mono = check(dir.path(), "mono");
    let multi = check(dir.path(), "multi");
    assert_eq!(
        mono["rows"], multi["rows"],
        "both datasets hold every valid event"
    );
    let tables = multi["tables"].as_object().unwrap();
    assert!(tables.len() > 20, "{multi}");
    assert!(tables.contains_key("purchase"), "{multi}");
    assert!(tables.contains_key("mp_identify"), "{multi}");
    assert!(tables.contains_key("res_order"), "{multi}");
    assert!(tables.contains_key("caf__visited"), "{multi}");
}

#[test]
fn json_tables_are_partitioned_and_registered_like_parquet_ones() {
    // SPEC §12 D9 (and D2: `time` is integer epoch seconds in JSON).
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        sluice()
            .args([
                "run",
                "topologies/quickstart.yaml",
                "--set",
                "sinks.lake.format=json",
            ])
            .args(lake_sets(dir.path())),
    );
    let script = r#"
import json, os, sqlite3, sys, duckdb
lake, catalog = sys.argv[1], sys.argv[2]
db = sqlite3.connect(catalog)
(tid, fmt), = db.execute("SELECT id, format FROM tables WHERE name = 'mp_master_event'")
assert fmt == "json", fmt
rows, ints, files = 0, 0, 0
con = duckdb.connect()
for value, loc in db.execute("SELECT value, location FROM partitions WHERE table_id = ?", (tid,)):
    folder = loc[len("file://"):]
    assert folder.rstrip("/").endswith(value.replace("-", "/")), (value, folder)
    for f in sorted(os.listdir(folder)):
        assert f.endswith(".json.gz"), f
        path = os.path.join(folder, f)
        n, t = con.execute("SELECT count(*), count(*) FILTER (WHERE typeof(time) = 'BIGINT') FROM read_ndjson_auto(?)", [path]).fetchone()
        rows += n; ints += t; files += 1
print(json.dumps({"rows": rows, "int_times": ints, "files": files}))
"#;
    let py = std::env::var("SLUICE_PYTHON")
        .unwrap_or_else(|_| repo().join(".venv/bin/python").display().to_string());
    let out = Command::new(py)
        .args(["-c", script])
        .arg(dir.path().join("lake"))
        .arg(dir.path().join("catalog.sqlite"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let valid = read_lines(&repo().join("topologies/sample/events.ndjson.gz"))
        .iter()
        .filter(|l| classify(l).is_some())
        .count() as u64;
    assert_eq!(report["rows"].as_u64(), Some(valid), "{report}");
    assert_eq!(report["int_times"].as_u64(), Some(valid), "{report}");
    assert!(report["files"].as_u64().unwrap() >= 3, "{report}");
    // The query command says plainly that it reads Parquet tables only.
    let out = sluice()
        .args([
            "query",
            "topologies/quickstart.yaml",
            "SELECT count(*) FROM mp_master_event",
            "--set",
            "sinks.lake.format=json",
        ])
        .args(lake_sets(dir.path()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reads Parquet tables"));
}
