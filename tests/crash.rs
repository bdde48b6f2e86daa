//! Exactly once across interruptions: a run killed with SIGKILL (or stopped with SIGTERM)
//! midway and run again leaves the same rows as an uninterrupted run. Row groups are small
//! here, so files are written while their windows fill, and interruptions catch them half
//! written.

mod common;
use common::*;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const T: &str = "topologies/quickstart.yaml";

fn sets(dir: &Path, input: &Path) -> Vec<String> {
    let mut v = lake_sets(dir);
    v.extend([
        "--set".into(),
        format!("sources.events.path={}", input.display()),
        "--set".into(),
        "sinks.lake.roll.max_age=200ms".into(),
        "--set".into(),
        "runtime.batch_size=512".into(),
        "--set".into(),
        "sinks.lake.roll.row_group_size=16KiB".into(),
    ]);
    v
}

/// Data files under `dir`, with their row groups.
fn row_groups(dir: &Path) -> Vec<(std::path::PathBuf, usize)> {
    parquet_footers(dir)
        .into_iter()
        .map(|(path, meta)| (path, meta.num_row_groups()))
        .collect()
}

fn start(dir: &Path, input: &Path) -> Child {
    sluice()
        .args(["run", T, "--no-progress"])
        .args(sets(dir, input))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts a run and interrupts it with `signal` once `commits` commits are done.
fn interrupt(dir: &Path, input: &Path, signal: i32, commits: i64) {
    let mut child = start(dir, input);
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed_manifests(dir) < commits {
        assert!(Instant::now() < deadline, "no commit seen");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before it could be interrupted: make the input bigger"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe_kill(child.id(), signal);
    let status = child.wait().unwrap();
    if signal == 15 {
        assert!(status.success(), "SIGTERM must stop cleanly, got {status}");
    }
}

fn unsafe_kill(pid: u32, signal: i32) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn rows(dir: &Path, input: &Path) -> String {
    let out = run_ok(
        sluice()
            .args([
                "query",
                T,
                "SELECT * FROM mp_master_event ORDER BY mp_insert_id, time",
                "--format",
                "csv",
            ])
            .args(sets(dir, input)),
    );
    stdout(&out)
}

fn dead_offsets(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = dead_letters(&dir.join("lake"))
        .iter()
        .map(|d| d["offset"].as_u64().unwrap())
        .collect();
    v.sort();
    v
}

fn check_interrupted(signal: i32) {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("events.ndjson");
    gen(&input, 60_000, 11, 0.02);

    let whole = work.path().join("whole");
    run_ok(
        sluice()
            .args(["run", T, "--no-progress"])
            .args(sets(&whole, &input)),
    );
    let want = rows(&whole, &input);

    let cut = work.path().join("cut");
    interrupt(&cut, &input, signal, 2);
    let partial = query_number(T, &cut, "SELECT count(*) FROM mp_master_event");
    let total = want.lines().count() as u64 - 1;
    assert!(
        partial > 0 && partial < total,
        "interrupted after {partial} of {total} rows: not midway"
    );
    let out = run_ok(
        sluice()
            .args(["run", T, "--no-progress"])
            .args(sets(&cut, &input)),
    );
    assert!(stdout(&out).contains("rows written"), "{}", stdout(&out));

    let got = rows(&cut, &input);
    assert_eq!(got.lines().count(), want.lines().count());
    assert!(
        got == want,
        "the interrupted lake differs from the uninterrupted one"
    );
    // Files were written row group by row group.
    let files = row_groups(&cut.join("lake"));
    assert!(
        files.iter().any(|(_, groups)| *groups > 1),
        "no file of several row groups: {files:?}"
    );
    let dead = dead_offsets(&cut);
    assert_eq!(dead, dead_offsets(&whole));
    let mut unique = dead.clone();
    unique.dedup();
    assert_eq!(unique.len(), dead.len(), "a dead letter was written twice");
}

#[test]
fn sigkill_midway_then_rerun_leaves_the_same_rows() {
    check_interrupted(9);
}

#[test]
fn sigterm_stops_cleanly_and_rerun_leaves_the_same_rows() {
    check_interrupted(15);
}

#[test]
fn a_rerun_after_completion_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(sluice().args(["run", T]).args(lake_sets(dir.path())));
    let first = query_number(T, dir.path(), "SELECT count(*) FROM mp_master_event");
    let out = run_ok(sluice().args(["run", T]).args(lake_sets(dir.path())));
    assert!(
        stdout(&out).contains("rows written     0"),
        "{}",
        stdout(&out)
    );
    // Every line of the input was passed over, and the summary says why.
    let input = std::process::Command::new("gzip")
        .args(["-dc", "topologies/sample/events.ndjson.gz"])
        .output()
        .unwrap();
    let text = &input.stdout;
    let lines = text.split(|&c| c == b'\n').count() - usize::from(text.ends_with(b"\n"));
    assert!(lines > 0);
    assert!(
        stdout(&out).contains(&format!("already committed by an earlier run: {lines}\n")),
        "{lines} lines: {}",
        stdout(&out)
    );
    assert_eq!(
        query_number(T, dir.path(), "SELECT count(*) FROM mp_master_event"),
        first
    );
}
