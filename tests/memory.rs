//! The memory budget (`runtime.memory_budget`): a sink holding thousands of open (table, day)
//! windows commits early instead of growing. Peak memory is the OS's figure for the process
//! (`wait4`'s maximum resident set), not the process's own account.

mod common;
use common::*;

use std::path::Path;
use std::process::Stdio;

/// 600,000 events over 60 days, one table per event name (multischema): some 2,500 windows.
fn input(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("events.ndjson.gz");
    run_ok(sluice().args([
        "gen",
        "--events",
        "600000",
        "--days",
        "60",
        "--seed",
        "11",
        "-o",
        &file.display().to_string(),
    ]));
    file
}

/// Runs the quickstart topology over `file` into `out` with `budget`; the peak resident set
/// in MiB, from the OS.
fn run_with_budget(file: &Path, out: &Path, budget: &str) -> u64 {
    let mut cmd = sluice();
    cmd.args(["run", "topologies/quickstart.yaml", "--no-progress"])
        .args(lake_sets(out))
        .args([
            "--set",
            &format!("sources.events.path={}", file.display()),
            "--set",
            "operators.types.schema=multischema",
            "--set",
            "sinks.lake.roll.max_age=1h",
            "--set",
            &format!("runtime.memory_budget={budget}"),
            // Batches in flight between stages are outside what a sink can commit: smaller
            // ones keep that share small beside the budget.
            "--set",
            "runtime.batch_size=1024",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Reaped by wait4 below, which also gives the peak resident set.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "sluice failed with budget {budget}: status {status}"
    );
    // Linux reports kilobytes.
    usage.ru_maxrss as u64 / 1024
}

fn rows(out: &Path) -> usize {
    let tables = run_ok(
        sluice()
            .args(["query", "topologies/quickstart.yaml", "--format", "csv"])
            .args(lake_sets(out))
            .arg("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"),
    );
    let names: Vec<String> = stdout(&tables)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert!(names.len() > 30, "multischema tables: {names:?}");
    let sql = names
        .iter()
        .map(|n| format!("SELECT count(*) AS n FROM \"{n}\""))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let out = run_ok(
        sluice()
            .args(["query", "topologies/quickstart.yaml", "--format", "csv"])
            .args(lake_sets(out))
            .arg(format!("SELECT sum(n) FROM ({sql})")),
    );
    stdout(&out).lines().nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn thousands_of_open_windows_stay_under_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let file = input(dir.path());
    // Unbounded (the default 1 GiB is far), the run holds every window until the end...
    let free = dir.path().join("free");
    let free_peak = run_with_budget(&file, &free, "1GiB");
    // ... with a budget below that, it commits early and stays under it.
    let tight = dir.path().join("tight");
    let budget = 320;
    let tight_peak = run_with_budget(&file, &tight, &format!("{budget}MiB"));
    assert!(
        free_peak > budget,
        "without flushing the run peaked at {free_peak} MiB, under {budget} MiB: the test tests nothing"
    );
    assert!(
        tight_peak < budget,
        "peaked at {tight_peak} MiB with a budget of {budget} MiB"
    );
    eprintln!("peaks: {free_peak} MiB free, {tight_peak} MiB with {budget} MiB");
    // Nothing lost either way.
    assert_eq!(rows(&free), 600_000);
    assert_eq!(rows(&tight), 600_000);
}
