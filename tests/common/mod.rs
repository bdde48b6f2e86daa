//! Helpers for the end-to-end tests: they run the real `sluice` binary.
#![allow(dead_code)]

pub mod faults;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.current_dir(repo());
    c.env_remove("RUST_LOG");
    c
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `--set` arguments that put a topology's `lake` sink under `dir`.
pub fn lake_sets(dir: &Path) -> Vec<String> {
    vec![
        "--set".into(),
        format!("sinks.lake.store.path={}", dir.join("lake").display()),
        "--set".into(),
        format!(
            "sinks.lake.catalog.path={}",
            dir.join("catalog.sqlite").display()
        ),
    ]
}

pub fn run_ok(cmd: &mut Command) -> Output {
    assert_ok(cmd.output().expect("running sluice"))
}

/// `out`, after asserting that sluice succeeded (else its output is shown).
pub fn assert_ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "sluice failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs SQL over the `lake` sink of `topology` redirected under `dir`, as CSV.
pub fn query_csv(topology: &str, dir: &Path, sql: &str) -> String {
    let out = run_ok(
        sluice()
            .args(["query", topology, sql, "--format", "csv"])
            .args(lake_sets(dir)),
    );
    stdout(&out)
}

/// Like [`query_csv`], but `None` when the query fails (e.g. no table yet).
pub fn try_query_csv(topology: &str, dir: &Path, sql: &str) -> Option<String> {
    let out = sluice()
        .args(["query", topology, sql, "--format", "csv"])
        .args(lake_sets(dir))
        .output()
        .ok()?;
    out.status.success().then(|| stdout(&out))
}

/// The single number a `SELECT count(*)`-style query prints in CSV.
pub fn query_number(topology: &str, dir: &Path, sql: &str) -> u64 {
    let csv = query_csv(topology, dir, sql);
    csv.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no number in {csv:?}"))
}

/// What an independent JSON parser says about a line of input: a valid event (with its
/// `$insert_id`) or not.
pub fn classify(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    let name = obj.get("event")?.as_str()?;
    if name.is_empty() {
        return None;
    }
    let props = obj.get("properties")?.as_object()?;
    let t = props.get("time")?.as_f64()?;
    if !(t.is_finite() && t >= 0.0) {
        return None;
    }
    Some(
        props
            .get("$insert_id")
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_string(),
    )
}

/// Lines of a possibly gzipped file.
pub fn read_lines(path: &Path) -> Vec<String> {
    use std::io::{BufRead, Read};
    let f = std::fs::File::open(path).expect("open input");
    let r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    std::io::BufReader::new(r)
        .lines()
        .map(|l| l.expect("utf-8 line"))
        .collect()
}

/// How many of `lines` `sluice replay` sends: an empty line is no message (a file source
/// reads it as a dead letter, a topic never holds it).
pub fn messages(lines: &[String]) -> usize {
    lines.iter().filter(|l| !l.is_empty()).count()
}

/// The footer of each Parquet file under `dir`, at any depth.
pub fn parquet_footers(dir: &Path) -> Vec<(PathBuf, parquet::file::metadata::ParquetMetaData)> {
    use parquet::file::reader::FileReader;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a lake folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            out.extend(parquet_footers(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            let file = std::fs::File::open(&path).expect("open a data file");
            let r = parquet::file::reader::SerializedFileReader::new(file)
                .expect("a data file is Parquet");
            let meta = r.metadata().clone();
            out.push((path, meta));
        }
    }
    out
}

/// All dead-letter records under a lake folder.
pub fn dead_letters(lake: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let dir = lake.join("_dead_letters").join("lake");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in rd.flatten() {
        let text = std::fs::read_to_string(e.path()).expect("read dead letters");
        for l in text.lines() {
            out.push(serde_json::from_str(l).expect("dead letter is JSON"));
        }
    }
    out
}

/// Generates events with `sluice gen` into `path`.
pub fn gen(path: &Path, events: u64, seed: u64, bad: f64) {
    run_ok(sluice().args([
        "gen",
        "--events",
        &events.to_string(),
        "--seed",
        &seed.to_string(),
        "--bad-fraction",
        &bad.to_string(),
        "-o",
        &path.display().to_string(),
    ]));
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

pub fn metric(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The address of a service the test script started, from `var`. Without it the calling test
/// says so and is skipped, unless `require` is `1` (the test script sets it), where it fails.
pub fn service(var: &str, require: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var(require).as_deref() != Ok("1"),
                "{require}=1 but {var} is not set"
            );
            eprintln!("skipped: no {what} (run scripts/test.sh, or set {var})");
            None
        }
    }
}

/// Commits done in the catalog under `dir` (0 before it exists).
pub fn committed_manifests(dir: &Path) -> i64 {
    committed_manifests_in(&dir.join("catalog.sqlite"))
}

/// Manifests marked done in the catalog (or commit-state) file `db`; 0 before it exists.
pub fn committed_manifests_in(db: &Path) -> i64 {
    let Ok(c) = rusqlite::Connection::open(db) else {
        return 0;
    };
    c.query_row(
        "SELECT count(*) FROM manifests WHERE stage = 'done'",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// `sluice replay FILE` into `topic` (8 partitions when it creates it); the JSON report.
pub fn replay(file: &Path, brokers: &str, topic: &str, extra: &[&str]) -> serde_json::Value {
    let out = run_ok(
        sluice()
            .args(["replay", &file.display().to_string(), "--brokers", brokers])
            .args([
                "--topic",
                topic,
                "--partitions",
                "8",
                "--json",
                "--no-progress",
            ])
            .args(extra),
    );
    serde_json::from_str(stdout(&out).trim()).expect("replay's JSON report")
}

/// Waits up to `wait` for consumer group `group` to be rebalancing (a member asked to join);
/// whether it was.
pub fn wait_for_rebalance(brokers: &str, group: &str, wait: Duration) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::ClientConfig;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Ok(list) = c.fetch_group_list(Some(group), Duration::from_secs(1)) {
            // The second member is listed once its request to join is in.
            let rebalancing = list.groups().iter().any(|g| {
                g.name() == group
                    && matches!(g.state(), "PreparingRebalance" | "CompletingRebalance")
                    && g.members().len() >= 2
            });
            if rebalancing {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Stops a worker still running and returns what it wrote to stderr, for a failure's message.
pub fn stop_and_log(mut child: Child) -> String {
    let _ = child.kill();
    match child.wait_with_output() {
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => format!("(no output: {e})"),
    }
}

/// SIGSTOP, then waits until every thread of the process has stopped: `kill` returns before
/// that, and a thread still running (or finishing a system call) could take a lock meanwhile.
pub fn stop(pid: u32) {
    signal(pid, "STOP");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let all_stopped = tasks.flatten().all(|t| {
            // The state follows the parenthesised command name, which may hold spaces.
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().to_string())
                })
                .is_none_or(|rest| rest.starts_with('T') || rest.starts_with('t'))
        });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// The value of the first series of `name` at the `/metrics` endpoint on `port` (None while
/// nothing listens there).
pub fn metric_at(port: u16, name: &str) -> Option<f64> {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .ok()
        .and_then(|_| metric(&http_get(port, "/metrics"), name, ""))
}

/// Polls `name` at `port` every `every` until `done` holds of it; `false` after `within`.
pub fn wait_for_metric(
    port: u16,
    name: &str,
    done: impl Fn(f64) -> bool,
    every: Duration,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if metric_at(port, name).is_some_and(&done) {
            return true;
        }
        std::thread::sleep(every);
    }
    false
}
