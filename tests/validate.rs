//! `sluice validate`, `graph`, `schema`, `--set` and `${ENV}`: bad configuration is rejected
//! before anything runs, with every problem and its place.

mod common;
use common::*;

const THREE_MISTAKES: &str = "\
sources:
  events:
    type: file
    path: events.ndjson
operators:
  clean:
    type: clean-name
    inputs: [events]
  dates:
    type: partition-by-date
    inputs: [clean]
    timezone: Mars/Olympus_Mons
  types:
    type: type-infer
    inputs: [dates]
    schema: monoschema
    colour: blue
sinks:
  lake:
    type: lake
    inputs: [typos]
    project_id: 1
    store: {type: local, path: lake}
    catalog: {type: local, path: lake/c.sqlite, database: demo}
";

#[test]
fn three_mistakes_give_three_errors_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, THREE_MISTAKES).unwrap();
    let out = sluice()
        .args(["validate", &f.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{err}");
    let file = f.display().to_string();
    // The bad timezone (line 12), the unknown key (line 17), the missing input (line 21).
    assert!(
        errors[0].starts_with(&format!("error: {file}:12:15: operators.dates:")),
        "{err}"
    );
    assert!(errors[0].contains("Mars/Olympus_Mons"), "{err}");
    assert!(
        errors[1].starts_with(&format!("error: {file}:17:5: operators.types:")),
        "{err}"
    );
    assert!(errors[1].contains("colour"), "{err}");
    assert!(
        errors[2].starts_with(&format!("error: {file}:21:14: sinks.lake:")),
        "{err}"
    );
    assert!(errors[2].contains("`typos` does not exist"), "{err}");
    // Each says what to do.
    assert_eq!(err.matches("help: ").count(), 3, "{err}");
    // Nothing ran.
    assert!(!dir.path().join("lake").exists());
}

#[test]
fn run_refuses_a_bad_topology_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, THREE_MISTAKES).unwrap();
    let out = sluice()
        .current_dir(dir.path())
        .args(["run", &f.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("lake").exists());
}

#[test]
fn every_shipped_topology_validates() {
    let mut n = 0;
    for e in std::fs::read_dir(repo().join("topologies"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            run_ok(sluice().args(["validate", &p.display().to_string()]));
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn missing_operators_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.yaml");
    std::fs::write(
        &f,
        "sources:\n  s: {type: file, path: x}\nsinks:\n  lake:\n    type: lake\n    inputs: [s]\n    project_id: 1\n    store: {type: local, path: l}\n    catalog: {type: local, path: c, database: d}\n",
    )
    .unwrap();
    let out = sluice()
        .args(["validate", &f.display().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("needs `type-infer` upstream"), "{err}");
    assert!(err.contains("needs `partition-by-date` upstream"), "{err}");
    assert!(err.contains(":4:3: sinks.lake"), "{err}");
}

#[test]
fn set_overrides_and_env_secrets_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.yaml");
    std::fs::write(
        &f,
        "sources:\n  s: {type: file, path: x}\noperators:\n  c: {type: clean-name, inputs: [s]}\n  t: {type: type-infer, inputs: [c]}\n  d: {type: partition-by-date, inputs: [t], timezone: '${SLUICE_TEST_TZ}'}\nsinks:\n  lake:\n    type: lake\n    inputs: [d]\n    project_id: 1\n    store: {type: local, path: l}\n    catalog: {type: local, path: c, database: d}\n",
    )
    .unwrap();
    let path = f.display().to_string();
    // A secret that is not a timezone: the error points at it but never prints it.
    let out = sluice()
        .env("SLUICE_TEST_TZ", "hunter2-secret")
        .args(["validate", &path])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(":6:"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    // Unset: a clear error naming the variable.
    let out = sluice()
        .env_remove("SLUICE_TEST_TZ")
        .args(["validate", &path])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable `SLUICE_TEST_TZ` is not set"),
        "{err}"
    );
    // Set, and overridden from the command line.
    run_ok(
        sluice()
            .env("SLUICE_TEST_TZ", "UTC")
            .args(["validate", &path]),
    );
    let out = sluice()
        .env("SLUICE_TEST_TZ", "UTC")
        .args(["graph", &path, "--set", "operators.d.timezone=Asia/Kolkata"])
        .output()
        .unwrap();
    let g = String::from_utf8_lossy(&out.stdout);
    assert!(g.contains("mp_date in Asia/Kolkata"), "{g}");
    let out = sluice()
        .env("SLUICE_TEST_TZ", "UTC")
        .args(["validate", &path, "--set", "sinks.lake.colour=red"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn graph_shows_fan_out() {
    let out = run_ok(sluice().args(["graph", "topologies/two-tables.yaml"]));
    let g = stdout(&out);
    let lines: Vec<&str> = g.lines().collect();
    assert!(lines[0].starts_with("events  [source: file]"), "{g}");
    assert_eq!(g.matches("[sink: lake]").count(), 2, "{g}");
    assert!(g.contains("monoschema"), "{g}");
    assert!(g.contains("multischema"), "{g}");
}

#[test]
fn schema_describes_every_component_type() {
    let out = run_ok(sluice().arg("schema"));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = s.to_string();
    for t in [
        "file",
        "clean-name",
        "type-infer",
        "stringify-nested",
        "partition-by-date",
        "lake",
    ] {
        assert!(text.contains(&format!("\"const\":\"{t}\"")), "missing {t}");
    }
    assert_eq!(s["additionalProperties"], serde_json::json!(false));
}

#[test]
fn s3_settings_are_checked_against_what_aws_allows() {
    let out = sluice()
        .args(["validate", "topologies/s3-glue.yaml"])
        .args([
            "--set",
            "sinks.lake.store.role_session=5m",
            "--set",
            "sinks.lake.catalog.role_session=13h",
            "--set",
            "sinks.lake.store.part_size=1MiB",
            "--set",
            "sinks.lake.roll.row_group_size=0",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "store.role_session: `5m` is outside AWS's sessions, 15m to 12h",
        "catalog.role_session: `13h` is outside AWS's sessions, 15m to 12h",
        "store.part_size: `1MiB` is below S3's smallest part, 5MiB",
        "roll.row_group_size: `0` must be above zero",
        "4 problem(s)",
    ] {
        assert!(err.contains(want), "{want} not in {err}");
    }
    // A test server (a custom endpoint) takes shorter sessions and smaller parts.
    let out = sluice()
        .args(["validate", "topologies/s3-glue.yaml"])
        .args([
            "--set",
            "sinks.lake.store.endpoint=http://127.0.0.1:1",
            "--set",
            "sinks.lake.store.role_session=15s",
            "--set",
            "sinks.lake.store.part_size=256KiB",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
