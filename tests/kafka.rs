//! Kafka end to end, against the real Apache Kafka broker that `scripts/test.sh` starts
//! (`scripts/kafka.sh`): `sluice gen` → `sluice replay` → `sluice run --until-caught-up`.
//!
//! The broker's address comes from `SLUICE_KAFKA_BROKERS`. Without it the tests say so and
//! pass, unless `SLUICE_REQUIRE_KAFKA=1` (set by the test script), where they fail.

mod common;
use common::*;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const T: &str = "topologies/kafka.yaml";

fn brokers() -> Option<String> {
    service(
        "SLUICE_KAFKA_BROKERS",
        "SLUICE_REQUIRE_KAFKA",
        "Kafka broker",
    )
}

/// The shared input: 100,000 generated lines with 5% malformed, replayed once into an
/// 8-partition topic. Tests read it with groups of their own.
struct Input {
    file: PathBuf,
    topic: String,
    valid: Vec<String>,
    malformed: usize,
    _dir: tempfile::TempDir,
}

fn input(brokers: &str) -> &'static Input {
    static INPUT: OnceLock<Input> = OnceLock::new();
    INPUT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.ndjson.gz");
        gen(&file, 100_000, 2024, 0.05);
        let lines = read_lines(&file);
        assert_eq!(lines.len(), 100_000);
        let valid: Vec<String> = lines.iter().filter_map(|l| classify(l)).collect();
        // Malformed messages: the empty lines are not sent.
        let malformed = messages(&lines) - valid.len();
        assert!(
            malformed > 4_000 && malformed < 6_000,
            "{malformed} malformed"
        );
        let topic = format!("events-{}", std::process::id());
        let report = replay(&file, brokers, &topic, &[]);
        assert_eq!(report["acked"], messages(&lines), "{report}");
        assert_eq!(report["failed"], 0, "{report}");
        Input {
            file,
            topic,
            valid,
            malformed,
            _dir: dir,
        }
    })
}

fn sets(dir: &Path, brokers: &str, topic: &str, group: &str) -> Vec<String> {
    let mut v = lake_sets(dir);
    for s in [
        format!("sources.events.brokers={brokers}"),
        format!("sources.events.topics=[{topic}]"),
        format!("sources.events.group={group}"),
        "sinks.lake.roll.max_age=300ms".into(),
        "runtime.batch_size=500".into(),
    ] {
        v.push("--set".into());
        v.push(s);
    }
    v
}

fn spawn(dir: &Path, brokers: &str, topic: &str, group: &str) -> Child {
    spawn_with(dir, brokers, topic, group, &[])
}

/// `spawn` with more `--set`s.
fn spawn_with(dir: &Path, brokers: &str, topic: &str, group: &str, extra: &[&str]) -> Child {
    sluice()
        .args(["run", T, "--no-progress", "--until-caught-up"])
        .args(sets(dir, brokers, topic, group))
        .args(extra.iter().flat_map(|s| ["--set", s]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_ok(child: Child) -> String {
    stdout(&assert_ok(child.wait_with_output().unwrap()))
}

/// Every row, keyed by what each column holds (its property and type class) rather than by the
/// column's name, sorted: what "identical lake contents" compares. Column names follow the order
/// properties were first seen in (SPEC §4.3), and that order differs between one worker and two,
/// or a run and a restarted one; what each event holds does not.
fn rows(dir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("catalog.sqlite")).unwrap();
    let names: std::collections::HashMap<String, String> = conn
        .prepare(
            "SELECT c.name, coalesce(c.source || ':' || c.class, c.name) FROM columns c
             JOIN tables t ON t.id = c.table_id WHERE t.name = 'mp_master_event'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let out = run_ok(
        sluice()
            .args([
                "query",
                T,
                "SELECT * FROM mp_master_event",
                "--format",
                "json",
            ])
            .args(lake_sets(dir)),
    );
    let mut rows: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l).unwrap();
            // Columns not in the catalog's list (the `mp_date` partition key) keep their name.
            let keyed: std::collections::BTreeMap<String, serde_json::Value> = v
                .into_iter()
                .map(|(k, v)| (names.get(&k).cloned().unwrap_or(k), v))
                .collect();
            serde_json::to_string(&keyed).unwrap()
        })
        .collect();
    rows.sort();
    rows
}

/// Dead letters as (partition, offset), sorted.
fn dead(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = dead_letters(&dir.join("lake"))
        .iter()
        .map(|d| {
            (
                d["partition"].as_str().unwrap().to_string(),
                d["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Rows = valid events, each `$insert_id` once; dead letters = malformed lines, each once.
fn check_exactly_once(dir: &Path, input: &Input) {
    let ids = query_csv(T, dir, "SELECT mp_insert_id FROM mp_master_event");
    let got: Vec<&str> = ids.lines().skip(1).collect();
    assert_eq!(got.len(), input.valid.len(), "rows != valid events");
    let unique: HashSet<&str> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "an $insert_id appears twice");
    let want: HashSet<&str> = input.valid.iter().map(|s| s.as_str()).collect();
    assert_eq!(unique, want, "the rows are not the valid events");
    let d = dead(dir);
    assert_eq!(d.len(), input.malformed, "dead letters != malformed lines");
    let mut u = d.clone();
    u.dedup();
    assert_eq!(u.len(), d.len(), "a dead letter was written twice");
}

/// The uninterrupted single-worker lake, made once.
type Baseline = (tempfile::TempDir, Vec<String>, Vec<(String, u64)>);

fn baseline(brokers: &str) -> &'static Baseline {
    static BASE: OnceLock<Baseline> = OnceLock::new();
    BASE.get_or_init(|| {
        let inp = input(brokers);
        let dir = tempfile::tempdir().unwrap();
        wait_ok(spawn(dir.path(), brokers, &inp.topic, "baseline"));
        check_exactly_once(dir.path(), inp);
        let r = rows(dir.path());
        let d = dead(dir.path());
        (dir, r, d)
    })
}

#[test]
fn gen_replay_run_until_caught_up_writes_each_valid_event_once() {
    let Some(b) = brokers() else { return };
    let inp = input(&b);
    let dir = tempfile::tempdir().unwrap();
    let out = wait_ok(spawn(dir.path(), &b, &inp.topic, "once"));
    assert!(out.contains("rows written"), "{out}");
    check_exactly_once(dir.path(), inp);
    // The group's offsets in Kafka (for lag tools) are the committed positions: every
    // partition's end.
    assert_eq!(group_offsets(&b, &inp.topic, "once"), ends(&b, &inp.topic));
    // Caught up and committed: running again reads nothing new and writes nothing.
    let out = wait_ok(spawn(dir.path(), &b, &inp.topic, "once"));
    assert!(out.contains("rows written     0"), "{out}");
    check_exactly_once(dir.path(), inp);
}

fn interrupted(sig: i32, group: &str) {
    let Some(b) = brokers() else { return };
    let inp = input(&b);
    let base = baseline(&b);
    let dir = tempfile::tempdir().unwrap();
    // Commits of at most 1 MiB held: many per run, so that the signal lands halfway: once
    // half the valid events are committed (the sink's committed-rows counter).
    let port = free_port();
    let mut child = sluice()
        .args(["run", T, "--no-progress", "--until-caught-up"])
        .args(sets(dir.path(), &b, &inp.topic, group))
        .args(["--set", "sinks.lake.roll.max_buffer=1MiB"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let half = inp.valid.len() as f64 / 2.0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "half the events never committed");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be interrupted");
        }
        if metric_at(port, "sluice_sink_rows_total").is_some_and(|n| n >= half) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(child.id(), &sig.to_string());
    let status = child.wait().unwrap();
    if sig == 15 {
        assert!(status.success(), "SIGTERM must stop cleanly, got {status}");
    }
    let partial = query_number(T, dir.path(), "SELECT count(*) FROM mp_master_event");
    assert!(
        partial as f64 >= half && partial < inp.valid.len() as u64,
        "interrupted after {partial} of {} rows: not halfway",
        inp.valid.len()
    );
    wait_ok(spawn(dir.path(), &b, &inp.topic, group));
    check_exactly_once(dir.path(), inp);
    assert!(
        rows(dir.path()) == base.1,
        "the lake differs from the uninterrupted one"
    );
    assert_eq!(dead(dir.path()), base.2);
}

#[test]
fn sigterm_halfway_then_restart_gives_the_same_lake() {
    interrupted(15, "sigterm");
}

#[test]
fn sigkill_halfway_then_restart_gives_the_same_lake() {
    interrupted(9, "sigkill");
}

#[test]
fn two_workers_in_one_group_split_the_partitions_and_match_one_worker() {
    let Some(b) = brokers() else { return };
    let inp = input(&b);
    let base = baseline(&b);
    let dir = tempfile::tempdir().unwrap();
    let verbose = |dir: &Path| {
        let mut c = sluice();
        c.args(["run", T, "--no-progress", "--until-caught-up", "-v"])
            .args(sets(dir, &b, &inp.topic, "pair"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    // A worker reads the 100,000 events in a second or two: a second one started beside it
    // may join once the first has read everything, and then has nothing to commit. So the
    // first is held still (SIGSTOP) as soon as it owns the partitions, until the broker has
    // the second's request to join; the group then waits for the first to rejoin and splits
    // the partitions while nearly all the events are still to read. The hold stays well
    // under the topology's 6 s session timeout, so no one is fenced.
    let db = dir.path().join("catalog.sqlite");
    let a = verbose(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while owned_partitions(&db) < 8 {
        assert!(
            Instant::now() < deadline,
            "the first worker got no partitions"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Not while it holds the embedded catalog's write lock: the second would wait for it.
    loop {
        stop(a.id());
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(Duration::from_millis(300)).unwrap();
        if c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_ok() {
            break;
        }
        signal(a.id(), "CONT");
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = verbose(dir.path());
    let joined = wait_for_rebalance(&b, "pair", Duration::from_secs(4));
    // Resumed, the first learns of the rebalance at its next heartbeat (every second in the
    // topology), and hands its partitions over once it has committed what it read. Until
    // then it keeps reading: the catalog's write lock, held here meanwhile, stops its commits,
    // and its bounded channels then stop its reading.
    let hold = rusqlite::Connection::open(&db).unwrap();
    hold.busy_timeout(Duration::from_secs(5)).unwrap();
    hold.execute_batch("BEGIN IMMEDIATE").unwrap();
    signal(a.id(), "CONT");
    std::thread::sleep(Duration::from_millis(2500));
    hold.execute_batch("ROLLBACK").unwrap();
    drop(hold);
    for (who, w) in [("first", a), ("second", c)] {
        let out = assert_ok(w.wait_with_output().unwrap());
        // Shown when the test fails: assignments, handovers, fencing, commits.
        println!(
            "--- {who} worker:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    check_exactly_once(dir.path(), inp);
    assert!(rows(dir.path()) == base.1, "two workers differ from one");
    assert_eq!(dead(dir.path()), base.2);
    // The partitions were split: each worker committed some of the rows (a commit's manifest
    // names its worker).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let workers: i64 = conn
        .query_row(
            "SELECT count(DISTINCT worker) FROM manifests WHERE stage = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        workers, 2,
        "one worker made every commit: the partitions were not split \
         (the broker saw the second join while the first was held: {joined})"
    );
}

/// The offsets `group` has committed in Kafka for the 8 partitions of `topic` (-1: none).
fn group_offsets(brokers: &str, topic: &str, group: &str) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..8 {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..8)
        .map(|p| match got.find_partition(topic, p).unwrap().offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// The end (high watermark) of each of the 8 partitions of `topic`.
fn ends(brokers: &str, topic: &str) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::ClientConfig;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    (0..8)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// Partitions with an owner in the catalog at `db` (0 before it exists).
fn owned_partitions(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT count(*) FROM owners", [], |r| r.get(0)))
        .unwrap_or(0)
}

#[test]
fn replay_keeps_the_asked_rate() {
    let Some(b) = brokers() else { return };
    let inp = input(&b);
    let topic = format!("rate-{}", std::process::id());
    let r = replay(
        &inp.file,
        &b,
        &topic,
        &["--rate", "20000", "--loop", "--max-events", "200000"],
    );
    assert_eq!(r["acked"], 200_000, "{r}");
    let rate = r["events_per_second"].as_f64().unwrap();
    assert!(
        (rate - 20_000.0).abs() / 20_000.0 < 0.05,
        "sent at {rate:.0} events/s, asked 20000 (±5%): {r}"
    );
}

#[test]
fn a_paused_worker_that_lost_its_partitions_is_fenced_and_nothing_is_lost() {
    let Some(b) = brokers() else { return };
    let inp = input(&b);
    let base = baseline(&b);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Long epochs for the first worker: it holds uncommitted events when it is paused.
    let worker = |metrics: Option<u16>| {
        let mut c = sluice();
        c.args(["run", T, "--no-progress", "--until-caught-up", "-v"])
            .args(sets(dir.path(), &b, &inp.topic, "zombie"));
        if let Some(p) = metrics {
            c.args(["--set", "sinks.lake.roll.max_age=1h"]);
            c.args(["--metrics-addr", &format!("127.0.0.1:{p}")]);
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = worker(Some(port));
    assert!(
        wait_for_metric(
            port,
            "sluice_source_lines_total",
            |n| n > 0.0,
            Duration::from_millis(20),
            Duration::from_secs(60),
        ),
        "the first worker read nothing"
    );
    // Pause it: the group drops it after its session times out and gives everything to the
    // second worker, which claims the partitions. Resumed, the first one must not commit.
    // Not while it holds the embedded catalog's write lock (registering a column, committing):
    // a worker stopped there would stall every other one, which is the SQLite state's limit,
    // not what this test is about.
    loop {
        stop(a.id());
        let c = rusqlite::Connection::open(dir.path().join("catalog.sqlite")).unwrap();
        c.busy_timeout(Duration::from_millis(300)).unwrap();
        if c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").is_ok() {
            break;
        }
        signal(a.id(), "CONT");
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(
        committed_manifests(dir.path()),
        0,
        "the paused worker had committed already"
    );
    // Start the second worker once the group has dropped the paused one (session timeout
    // 6 s in the topology): a member joining while the paused one still counts would wait for
    // it up to the rebalance timeout (max.poll.interval.ms, 5 min).
    std::thread::sleep(Duration::from_secs(9));
    let c = worker(None);
    let deadline = Instant::now() + Duration::from_secs(180);
    while committed_manifests(dir.path()) == 0 {
        if Instant::now() > deadline {
            signal(a.id(), "CONT");
            panic!(
                "the second worker committed nothing in 180 s\n--- first worker:\n{}\n--- second worker:\n{}",
                stop_and_log(a),
                stop_and_log(c)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(a.id(), "CONT");
    wait_ok(a);
    wait_ok(c);
    check_exactly_once(dir.path(), inp);
    assert!(
        rows(dir.path()) == base.1,
        "the lake differs from one worker's"
    );
    assert_eq!(dead(dir.path()), base.2);
    let conn = rusqlite::Connection::open(dir.path().join("catalog.sqlite")).unwrap();
    let abandoned: Vec<String> = conn
        .prepare("SELECT objects FROM manifests WHERE stage = 'abandoned'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        !abandoned.is_empty(),
        "no commit was fenced: the test did not test fencing"
    );
    for objects in abandoned {
        let keys: Vec<String> = serde_json::from_str(&objects).unwrap();
        for k in keys {
            assert!(
                !dir.path().join("lake").join(&k).exists(),
                "{k} of a fenced commit is still in the store"
            );
        }
    }
}

/// Every message of `topic`, from the start to the end it has now.
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, serde_json::Value)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in md.topics()[0].partitions() {
        let (low, high) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(30))
            .unwrap();
        remaining += high - low;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < remaining {
        assert!(Instant::now() < deadline, "could not read {topic}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            out.push((key, serde_json::from_slice(m.payload().unwrap()).unwrap()));
        }
    }
    out
}

#[test]
fn dead_letters_can_go_to_a_kafka_topic() {
    let Some(b) = brokers() else { return };
    let inp = input(&b);
    let dir = tempfile::tempdir().unwrap();
    let dlq = format!("dead-{}", std::process::id());
    let out = sluice()
        .args(["run", T, "--no-progress", "--until-caught-up"])
        .args(sets(dir.path(), &b, &inp.topic, "dlq"))
        .args([
            "--set",
            &format!("sinks.lake.dead_letters={{kafka: {{brokers: '{b}', topic: {dlq}}}}}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dead(dir.path()).is_empty(),
        "dead letters went to the store as well"
    );
    // The sink created the topic (the test broker does not create topics on first use).
    let got = read_topic(&b, &dlq);
    assert_eq!(got.len(), inp.malformed, "one message per malformed line");
    let keys: HashSet<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), got.len(), "a dead letter was sent twice");
    for (k, v) in &got {
        assert!(!v["reason"].as_str().unwrap().is_empty());
        assert_eq!(
            k,
            &format!(
                "events/{}/{}",
                v["partition"].as_str().unwrap(),
                v["offset"].as_u64().unwrap()
            )
        );
        assert!(classify(v["raw"].as_str().unwrap()).is_none(), "{v}");
    }
    check_rows_only(dir.path(), inp);
}

/// Rows = valid events, each `$insert_id` once.
fn check_rows_only(dir: &Path, input: &Input) {
    let ids = query_csv(T, dir, "SELECT mp_insert_id FROM mp_master_event");
    let got: HashSet<&str> = ids.lines().skip(1).collect();
    assert_eq!(got.len(), input.valid.len());
    assert_eq!(ids.lines().count() - 1, input.valid.len());
}

/// Events of `n` lines from `gen` (no malformed ones), with their valid count.
fn small_file(dir: &Path, name: &str, n: u64, seed: u64) -> (PathBuf, usize) {
    let file = dir.join(name);
    gen(&file, n, seed, 0.0);
    let valid = read_lines(&file)
        .iter()
        .filter(|l| classify(l).is_some())
        .count();
    (file, valid)
}

fn pattern_run(dir: &Path, brokers: &str, pattern: &str, group: &str, start: &str) -> String {
    let mut sets = sets(dir, brokers, "unused", group);
    for s in [
        "sources.events.topics=[]".to_string(),
        format!("sources.events.topic_pattern={pattern}"),
        format!("sources.events.start={start}"),
    ] {
        sets.push("--set".into());
        sets.push(s);
    }
    stdout(&run_ok(
        sluice()
            .args(["run", T, "--no-progress", "--until-caught-up"])
            .args(sets),
    ))
}

/// A new group reads the topics a pattern matches, from the start it is given: a time, the
/// earliest offsets, or the latest.
#[test]
fn a_topic_pattern_and_a_start_choose_what_a_new_group_reads() {
    let Some(b) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let (early, early_valid) = small_file(dir.path(), "early.ndjson", 400, 5);
    let (late, late_valid) = small_file(dir.path(), "late.ndjson", 300, 6);
    let (a, other) = (format!("pat{pid}-a"), format!("pat{pid}-b"));
    for t in [&a, &other] {
        assert_eq!(replay(&early, &b, t, &[])["acked"], 400);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(replay(&late, &b, &a, &[])["acked"], 300);
    let pattern = format!("^pat{pid}-.*");
    let count = |d: &Path| query_number(T, d, "SELECT count(*) FROM mp_master_event");

    let from_cut = dir.path().join("cut");
    pattern_run(&from_cut, &b, &pattern, "pat-cut", &cut.to_string());
    assert_eq!(count(&from_cut), late_valid as u64, "from the time");

    let all = dir.path().join("all");
    pattern_run(&all, &b, &pattern, "pat-all", "earliest");
    assert_eq!(
        count(&all),
        (2 * early_valid + late_valid) as u64,
        "both topics from the start"
    );

    let latest = dir.path().join("latest");
    let out = pattern_run(&latest, &b, &pattern, "pat-latest", "latest");
    assert!(out.contains("rows written     0"), "{out}");
}

/// `--speed` paces every pass of `--loop` by the events' own times, and a message the producer
/// cannot send is counted as failed in the report (exit 1), not a crash without one.
#[test]
fn replay_paces_each_loop_and_reports_messages_it_cannot_send() {
    let Some(b) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Five events one second apart: at --speed 4, a pass takes one second.
    let paced = dir.path().join("paced.ndjson");
    let lines: Vec<String> = (0..5)
        .map(|i| {
            format!(
                r#"{{"event":"tick","properties":{{"time":{},"distinct_id":"u{i}","$insert_id":"p{i}"}}}}"#,
                1_700_000_000 + i
            )
        })
        .collect();
    std::fs::write(&paced, lines.join("\n") + "\n").unwrap();
    let topic = format!("paced-{}", std::process::id());
    let r = replay(
        &paced,
        &b,
        &topic,
        &["--speed", "4", "--loop", "--max-events", "15"],
    );
    assert_eq!(r["acked"], 15, "{r}");
    // Three passes: the last event is due at 2 s + 1 s (not 1 s, as when later passes were
    // sent unpaced).
    let seconds = r["seconds"].as_f64().unwrap();
    assert!(
        (2.6..10.0).contains(&seconds),
        "15 events at --speed 4 over 3 passes took {seconds:.2} s: {r}"
    );

    // A message over the producer's 1 MB limit among small ones.
    let big = dir.path().join("big.ndjson");
    let huge = "x".repeat(1_500_000);
    std::fs::write(
        &big,
        format!(
            "{}\n{}\n{{\"event\":\"huge\",\"properties\":{{\"time\":1700000000,\"blob\":\"{huge}\"}}}}\n{}\n",
            lines[0], lines[1], lines[2]
        ),
    )
    .unwrap();
    let out = sluice()
        .args(["replay", &big.display().to_string(), "--brokers", &b])
        .args(["--topic", &topic, "--json", "--no-progress"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(r["events"], 4, "{r}");
    assert_eq!(r["acked"], 3, "{r}");
    assert_eq!(r["failed"], 1, "{r}");
    assert!(
        r["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("too large"),
        "{r}"
    );
}

/// A bounded run of a topic that does not exist stops at once, naming it (it would otherwise
/// wait for it forever).
#[test]
fn a_bounded_run_of_a_missing_topic_is_refused() {
    let Some(b) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("missing-{}", std::process::id());
    let out = sluice()
        .args(["run", T, "--no-progress", "--until-caught-up"])
        .args(sets(dir.path(), &b, &topic, "missing"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("topic(s) {topic} do not exist")),
        "{err}"
    );
}

/// Events in one partition of eight, the others idle: a running (unbounded) worker commits
/// them on its window's age, the idle partitions holding nothing back.
#[test]
fn idle_partitions_hold_no_window_back() {
    let Some(b) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one-user.ndjson");
    let lines: Vec<String> = (0..500)
        .map(|i| {
            format!(
                r#"{{"event":"e","properties":{{"time":{},"distinct_id":"one","$insert_id":"i{i}"}}}}"#,
                1_700_000_000 + i
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let topic = format!("idle-{}", std::process::id());
    // Keyed by distinct_id: all of them in one partition.
    assert_eq!(replay(&file, &b, &topic, &[])["acked"], 500);
    assert_eq!(ends(&b, &topic).iter().filter(|e| **e > 0).count(), 1);
    let port = free_port();
    let child = sluice()
        .args(["run", T, "--no-progress"])
        .args(sets(dir.path(), &b, &topic, "idle"))
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if metric_at(port, "sluice_sink_rows_total") == Some(500.0) {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "not committed while seven partitions idle:\n{}",
                stop_and_log(child)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Committed while the run goes on; a clean stop after.
    signal(child.id(), "TERM");
    assert_ok(child.wait_with_output().unwrap());
    assert_eq!(
        query_number(
            T,
            dir.path(),
            "SELECT count(DISTINCT mp_insert_id) FROM mp_master_event"
        ),
        500
    );
}
