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

/// For each data file under `dir`: its columns, and the rows of each of its row groups but the
/// last (which ends with the file, not on the budget).
fn full_row_groups(dir: &Path) -> Vec<(usize, Vec<i64>)> {
    parquet_footers(dir)
        .into_iter()
        .map(|(_, meta)| {
            let groups = meta.num_row_groups();
            let rows = (0..groups.saturating_sub(1))
                .map(|i| meta.row_group(i).num_rows())
                .collect();
            (meta.file_metadata().schema_descr().num_columns(), rows)
        })
        .collect()
}

/// Generates `events` events with `distinct` custom names starting at `start` (one day, no
/// late events) into `file`.
fn gen_day(file: &Path, events: u32, distinct: u32, start: u64, seed: u32) {
    run_ok(sluice().args([
        "gen",
        "--events",
        &events.to_string(),
        "--distinct-props",
        &distinct.to_string(),
        "--start",
        &start.to_string(),
        "--late-fraction",
        "0",
        "--seed",
        &seed.to_string(),
        "-o",
        &file.display().to_string(),
    ]));
}

/// Runs the quickstart topology, row groups of 128 KiB, over a warm-up day then a measured
/// day a week later, both with `distinct` custom names; the columns of the file with the most
/// row groups (the measured day's), and the median rows of its full row groups.
///
/// A file is closed when its table gains columns, so a run whose names are still arriving
/// makes files of few row groups, more or fewer depending on how far `type-infer` runs ahead
/// of the sink. The warm-up day (30,000 events: each of the 2 × `distinct` (name, type)
/// columns drawn about 15 times) makes the table whole before the measured day begins.
fn measured_day_groups(dir: &Path, distinct: u32) -> (usize, i64) {
    const DAY: u64 = 86_400;
    let start = 1_700_000_000;
    std::fs::create_dir_all(dir).unwrap();
    gen_day(
        &dir.join("a-warm-up.ndjson"),
        30_000,
        distinct,
        start - 7 * DAY,
        3,
    );
    gen_day(&dir.join("b-measured.ndjson"), 12_000, distinct, start, 4);
    run_ok(
        sluice()
            .args(["run", "topologies/quickstart.yaml", "--no-progress"])
            .args(lake_sets(dir))
            .args([
                "--set",
                &format!("sources.events.path={}/*.ndjson", dir.display()),
                "--set",
                "sinks.lake.roll.max_age=1h",
                "--set",
                "sinks.lake.roll.row_group_size=128KiB",
            ]),
    );
    let files = full_row_groups(&dir.join("lake"));
    let (columns, mut rows) = files
        .into_iter()
        .max_by_key(|(columns, rows)| (rows.len(), *columns))
        .unwrap();
    assert!(rows.len() >= 3, "too few row groups to compare: {rows:?}");
    rows.sort();
    (columns, rows[rows.len() / 2])
}

/// A table wider than 2,048 columns gets row groups larger in proportion to its width: every
/// column costs a chunk in every row group, so with row groups of a fixed size a table's cost
/// would grow with its events times its columns.
#[test]
fn a_wide_table_gets_row_groups_larger_in_proportion_to_its_width() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = dir.path().join("narrow");
    let wide = dir.path().join("wide");
    let (narrow_columns, narrow_rows) = measured_day_groups(&narrow, 0);
    let (wide_columns, wide_rows) = measured_day_groups(&wide, 3000);
    assert!(narrow_columns < 2048, "{narrow_columns} columns");
    assert!(wide_columns > 4096, "{wide_columns} columns");
    // The wide events carry three more values each, so they fill a row group a little sooner
    // per row; the width more than makes up for it.
    let expected = narrow_rows as f64 * wide_columns as f64 / 2048.0;
    eprintln!(
        "rows per row group: {narrow_rows} at {narrow_columns} columns, \
         {wide_rows} at {wide_columns} columns (expected about {expected:.0})"
    );
    assert!(
        wide_rows as f64 >= 0.6 * expected,
        "{wide_rows} rows per row group at {wide_columns} columns, \
         {narrow_rows} at {narrow_columns}: expected about {expected:.0}"
    );
}
