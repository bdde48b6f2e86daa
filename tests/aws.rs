//! Kafka → operators → S3 + Glue, against the real broker and moto's S3/Glue/KMS server that
//! `scripts/test.sh` starts. An independent reader (boto3 + pyarrow, `tests/python/aws_lake.py`)
//! checks every object's encryption, the Glue table and partitions (SPEC §8.4), and reads the
//! rows through Glue.

mod common;
use common::*;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

const T: &str = "topologies/s3-glue.yaml";

/// moto's state is one per server: the tests here take turns.
static MOTO: Mutex<()> = Mutex::new(());

fn python() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn aws_lake(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(repo().join("tests/python/aws_lake.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws_lake.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Input {
    topic: String,
    valid: HashSet<String>,
    malformed: usize,
}

/// 20,000 generated events in a topic of the test's own.
fn input(brokers: &str, dir: &Path, test: &str) -> Input {
    input_of(brokers, dir, test, 20_000)
}

/// `events` generated events (5% malformed) in a topic of the test's own.
fn input_of(brokers: &str, dir: &Path, test: &str, events: u64) -> Input {
    let file = dir.join("events.ndjson.gz");
    gen(&file, events, 77, 0.05);
    let lines = read_lines(&file);
    let valid: HashSet<String> = lines.iter().filter_map(|l| classify(l)).collect();
    let topic = format!("aws-{test}-{}", std::process::id());
    let report = replay(&file, brokers, &topic, &[]);
    assert_eq!(report["acked"], messages(&lines), "{report}");
    Input {
        topic,
        malformed: messages(&lines) - valid.len(),
        valid,
    }
}

/// `sluice <args>` on the S3 + Glue topology against the test services, with the test keys,
/// run in `dir`.
fn s3_command(
    args: &[&str],
    brokers: &str,
    endpoint: &str,
    dir: &Path,
    input: &Input,
    group: &str,
    extra: &[String],
) -> Command {
    let mut sets: Vec<String> = Vec::new();
    for s in [
        format!("sources.events.brokers={brokers}"),
        format!("sources.events.topics=[{}]", input.topic),
        format!("sources.events.group={group}"),
        format!("sinks.lake.store.endpoint={endpoint}"),
        format!("sinks.lake.catalog.endpoint={endpoint}"),
        "sinks.lake.store.bucket=lake".into(),
        "sinks.lake.catalog.database=analytics".into(),
        "sinks.lake.roll.max_age=1s".into(),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    {
        sets.push("--set".into());
        sets.push(s);
    }
    // Each worker in a folder of its own, as on a machine of its own: what they share is the
    // bucket, Glue and the broker.
    std::fs::create_dir_all(dir).unwrap();
    let mut c = sluice();
    c.current_dir(dir)
        .args(args)
        .arg(repo().join(T))
        .args(&sets)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

/// `sluice run --until-caught-up` of the S3 + Glue topology.
fn s3_run(
    brokers: &str,
    endpoint: &str,
    dir: &Path,
    input: &Input,
    group: &str,
    extra: &[String],
) -> Command {
    let mut c = s3_command(&["run"], brokers, endpoint, dir, input, group, extra);
    c.args(["--no-progress", "--until-caught-up"]);
    c
}

fn run_to_s3(
    brokers: &str,
    endpoint: &str,
    dir: &Path,
    input: &Input,
    group: &str,
    extra: &[String],
) {
    run_ok(&mut s3_run(brokers, endpoint, dir, input, group, extra));
}

fn check(endpoint: &str, input: &Input, sse: &str, key: Option<&str>) {
    let report: serde_json::Value = serde_json::from_str(&aws_lake(&[
        "check",
        endpoint,
        "lake",
        "analytics",
        "mp_master_event",
    ]))
    .unwrap();
    // Every object carries the requested encryption.
    let objects = report["objects"].as_array().unwrap();
    assert!(objects.len() > 2, "{report}");
    for o in objects {
        assert_eq!(o["sse"], sse, "{o}");
        if let Some(k) = key {
            assert_eq!(o["kms_key_id"], k, "{o}");
        }
    }
    let parquet = objects
        .iter()
        .filter(|o| o["key"].as_str().unwrap().ends_with(".parquet"))
        .count();
    assert!(parquet > 0);
    assert!(objects
        .iter()
        .any(|o| o["key"].as_str().unwrap().contains("_dead_letters/")));
    // The table as SPEC §8.4 describes it.
    let t = &report["table"];
    assert_eq!(t["type"], "EXTERNAL_TABLE");
    assert_eq!(t["parameters"]["classification"], "parquet");
    assert_eq!(t["parameters"]["EXTERNAL"], "TRUE");
    assert_eq!(
        t["partition_keys"],
        serde_json::json!([{"Name": "mp_date", "Type": "string"}])
    );
    assert_eq!(
        t["location"],
        "s3://lake/exports/mixpanel/1/mp_master_event/"
    );
    assert_eq!(
        t["input_format"],
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    );
    assert_eq!(
        t["output_format"],
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    );
    assert_eq!(
        t["serde"],
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    let cols = t["columns"].as_array().unwrap();
    let col = |n: &str| {
        cols.iter()
            .find(|c| c["Name"] == n)
            .map(|c| c["Type"].clone())
    };
    assert_eq!(col("time"), Some("timestamp".into()));
    assert_eq!(col("mp_event_name"), Some("string".into()));
    assert_eq!(col("mp_insert_id"), Some("string".into()));
    assert!(
        col("mp_date").is_none(),
        "mp_date is a partition key, not a column"
    );
    // Partitions: one per day, at its day folder.
    let parts = report["partitions"].as_array().unwrap();
    assert!(!parts.is_empty());
    for p in parts {
        let day = p["values"][0].as_str().unwrap();
        assert_eq!(
            p["location"],
            format!(
                "s3://lake/exports/mixpanel/1/mp_master_event/{}/{}/{}/",
                &day[0..4],
                &day[5..7],
                &day[8..10]
            )
        );
    }
    // Read through Glue: exactly the valid events.
    let ids: Vec<String> = report["insert_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), input.valid.len(), "rows read through Glue");
    let unique: HashSet<String> = ids.into_iter().collect();
    assert_eq!(unique, input.valid);
    let _ = input.malformed;
}

/// Where the tests' dataset keeps its commit state in the bucket.
const STATE: &str = "exports/mixpanel/1/_sluice/state/";

/// The commit state's log, read from the bucket by boto3 (`aws_lake.py state`): each
/// operation with its `seq`, `kind` and `writer`.
fn state_log(endpoint: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&aws_lake(&["state", endpoint, "lake", STATE])).unwrap()
}

fn services() -> Option<(String, String)> {
    let b = service(
        "SLUICE_KAFKA_BROKERS",
        "SLUICE_REQUIRE_KAFKA",
        "Kafka broker",
    )?;
    let m = service(
        "SLUICE_AWS_ENDPOINT",
        "SLUICE_REQUIRE_AWS",
        "S3/Glue endpoint",
    )?;
    Some((b, m))
}

#[test]
fn kafka_to_s3_and_glue_with_aes_then_kms() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input_of(&brokers, dir.path(), "sse", 100_000);

    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    let aes = dir.path().join("aes");
    run_to_s3(&brokers, &endpoint, &aes, &inp, "aes", &[]);
    check(&endpoint, &inp, "AES256", None);
    // `sluice query` reads what Glue declares, from S3: every valid event once, and a filter
    // on the partition key keeps only that day's rows.
    let query = |sql: &str| -> serde_json::Value {
        let out = run_ok(
            s3_command(
                &["query", "--format", "json"],
                &brokers,
                &endpoint,
                &aes,
                &inp,
                "aes",
                &[],
            )
            .arg(sql),
        );
        serde_json::from_str(stdout(&out).lines().next().unwrap_or("{}")).unwrap()
    };
    let all = query(
        "SELECT count(*) AS n, count(DISTINCT mp_insert_id) AS d, min(mp_date) AS day FROM mp_master_event",
    );
    assert_eq!(all["n"], inp.valid.len(), "{all}");
    assert_eq!(all["d"], inp.valid.len(), "{all}");
    let day = all["day"].as_str().unwrap().to_string();
    let one = query(&format!(
        "SELECT count(*) AS n, count(DISTINCT mp_date) AS days FROM mp_master_event WHERE mp_date = '{day}'"
    ));
    assert_eq!(one["days"], 1, "{one}");
    assert!(one["n"].as_u64().unwrap() > 0, "{one}");

    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    let key = aws_lake(&["kms-key", &endpoint]).trim().to_string();
    let kms = dir.path().join("kms");
    run_to_s3(
        &brokers,
        &endpoint,
        &kms,
        &inp,
        "kms",
        &[
            "sinks.lake.store.encryption=kms".into(),
            format!("sinks.lake.store.kms_key_id={key}"),
        ],
    );
    check(&endpoint, &inp, "aws:kms", Some(&key));
}

#[test]
fn a_missing_glue_database_stops_the_run_before_anything_moves() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    let dir = tempfile::tempdir().unwrap();
    let out = sluice()
        .current_dir(dir.path())
        .args(["run", &repo().join(T).display().to_string()])
        .args(["--no-progress", "--until-caught-up"])
        .args([
            "--set",
            &format!("sources.events.brokers={brokers}"),
            "--set",
            &format!("sinks.lake.store.endpoint={endpoint}"),
            "--set",
            &format!("sinks.lake.catalog.endpoint={endpoint}"),
            "--set",
            "sinks.lake.store.bucket=lake",
            "--set",
            "sinks.lake.catalog.database=nowhere",
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Glue database `nowhere`") && err.contains("us-east-1"),
        "{err}"
    );
    let report = aws_lake(&["check-empty", &endpoint, "lake"]);
    assert_eq!(report.trim(), "0", "objects were written");
}

/// moto checks every call's credentials and IAM policies while this lives.
struct Enforced<'a>(&'a str);

impl<'a> Enforced<'a> {
    fn on(endpoint: &'a str) -> Self {
        aws_lake(&["enforce", endpoint, "on"]);
        Enforced(endpoint)
    }
}

impl Drop for Enforced<'_> {
    fn drop(&mut self) {
        // Not asserting: this may run while a failed test unwinds.
        let _ = Command::new(python())
            .arg(repo().join("tests/python/aws_lake.py"))
            .args(["enforce", self.0, "off"])
            .status();
    }
}

#[test]
fn roles_are_assumed_with_the_project_token_as_external_id() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input(&brokers, dir.path(), "roles");
    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    // The engine's own user may only assume the two roles; the S3 role may only use S3 and
    // the Glue role only Glue, and both trust the engine only with the external id.
    let roles: serde_json::Value =
        serde_json::from_str(&aws_lake(&["roles", &endpoint, "token-0123456789"])).unwrap();
    let (key, secret) = (
        roles["access_key"].as_str().unwrap(),
        roles["secret_key"].as_str().unwrap(),
    );
    let s3_role = roles["s3_role"].as_str().unwrap();
    let with_token = |token: &str| -> Vec<String> {
        vec![
            format!("sinks.lake.store.role={s3_role}"),
            format!(
                "sinks.lake.catalog.role={}",
                roles["glue_role"].as_str().unwrap()
            ),
            format!("sinks.lake.project_token={token}"),
        ]
    };

    // The wrong external id: refused before any data moves, saying which role and why.
    let out = {
        let _on = Enforced::on(&endpoint);
        s3_run(
            &brokers,
            &endpoint,
            &dir.path().join("wrong"),
            &inp,
            "wrong",
            &with_token("token-wrong"),
        )
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap()
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a configuration error: {err}");
    assert!(
        err.contains(&format!("assuming role `{s3_role}` for S3")) && err.contains("external id"),
        "{err}"
    );
    assert!(
        err.contains("s3-glue.yaml:"),
        "where in the topology: {err}"
    );
    assert!(!err.contains(secret), "the secret key was printed");
    assert_eq!(aws_lake(&["check-empty", &endpoint, "lake"]).trim(), "0");

    // `validate --online` prints the statements that are missing: the trust policy's for the
    // wrong external id, the role policy's for a role that may not write.
    let validate = |extra: Vec<String>| {
        let _on = Enforced::on(&endpoint);
        let out = s3_command(
            &["validate", "--online"],
            &brokers,
            &endpoint,
            &dir.path().join("validate"),
            &inp,
            "validate",
            &extra,
        )
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
        (out.status.code(), stdout(&out))
    };
    let (code, out) = validate(with_token("token-wrong"));
    assert_eq!(code, Some(2), "{out}");
    let trust = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/engine"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"token-wrong"}}}"#;
    assert!(
        out.contains(&format!("in the trust policy of {s3_role}:")) && out.contains(trust),
        "{out}"
    );
    let mut readonly = with_token("token-0123456789");
    readonly[0] = format!(
        "sinks.lake.store.role={}",
        roles["readonly_role"].as_str().unwrap()
    );
    let (code, out) = validate(readonly);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("ok      sinks.lake: s3:ListBucket on lake"),
        "{out}"
    );
    assert!(
        out.contains(
            r#"{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::lake/*"}"#
        ),
        "{out}"
    );
    let (code, out) = validate(with_token("token-0123456789"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("check(s) passed"), "{out}");
    assert!(
        out.contains("ok      sinks.lake: conditional writes (If-None-Match: *) refused"),
        "the commit state's conditional writes were not checked: {out}"
    );
    assert_eq!(
        aws_lake(&["check-empty", &endpoint, "lake"]).trim(),
        "0",
        "validate left its probe behind"
    );

    // The right one: everything through the assumed roles (the engine's own keys could not
    // write a thing).
    {
        let _on = Enforced::on(&endpoint);
        run_ok(
            s3_run(
                &brokers,
                &endpoint,
                &dir.path().join("right"),
                &inp,
                "right",
                &with_token("token-0123456789"),
            )
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret),
        );
    }
    check(&endpoint, &inp, "AES256", None);
}

/// JSON-format tables (SPEC §12 D9) with a Glue table prefix (D11): gzipped NDJSON under the
/// same folders (the prefix names Glue tables only), a JSON SerDe table, its partitions, and
/// every valid event once in the files Glue's partitions point at.
#[test]
fn json_tables_with_a_glue_table_prefix() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input(&brokers, dir.path(), "json");
    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    run_to_s3(
        &brokers,
        &endpoint,
        dir.path(),
        &inp,
        "json",
        &[
            "sinks.lake.format=json".into(),
            "sinks.lake.catalog.table_prefix=mixpanel_".into(),
            // The commit state in a file rather than the bucket: that choice works too.
            format!(
                "sinks.lake.catalog.state={}",
                dir.path().join("state.sqlite").display()
            ),
        ],
    );
    assert!(
        state_log(&endpoint).is_empty(),
        "with a state file, nothing of the state is in the bucket"
    );
    let t: serde_json::Value = serde_json::from_str(&aws_lake(&[
        "json-table",
        &endpoint,
        "lake",
        "analytics",
        "mixpanel_mp_master_event",
    ]))
    .unwrap();
    assert_eq!(t["serde"], "org.openx.data.jsonserde.JsonSerDe", "{t}");
    assert_eq!(t["parameters"]["classification"], "json", "{t}");
    assert_eq!(
        t["location"], "s3://lake/exports/mixpanel/1/mp_master_event/",
        "the prefix names the Glue table, not the folder"
    );
    assert!(!t["partitions"].as_array().unwrap().is_empty(), "{t}");
    let keys = t["keys"].as_array().unwrap();
    assert!(
        !keys.is_empty()
            && keys
                .iter()
                .all(|k| k.as_str().unwrap().ends_with(".json.gz")),
        "{keys:?}"
    );
    let ids: Vec<String> = t["insert_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "an event is there twice");
    assert_eq!(unique, inp.valid, "the rows differ from the valid events");
}

/// An assumed role's session ends while the run goes on, and is renewed without a restart:
/// sessions of 15 s over a run of about 40 s with events arriving all along, IAM enforced (the
/// engine's own keys cannot touch S3 or Glue). STS calls are counted at a proxy.
#[test]
fn assumed_role_sessions_are_renewed_while_a_run_goes_on() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Half the events before the run starts, half at 250 per second while it runs.
    let mut inp = input(&brokers, dir.path(), "renew");
    let later = dir.path().join("later.ndjson.gz");
    gen(&later, 8_000, 78, 0.05);
    let lines = read_lines(&later);
    let valid: HashSet<String> = lines.iter().filter_map(|l| classify(l)).collect();
    inp.malformed += messages(&lines) - valid.len();
    inp.valid.extend(valid);

    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    let roles: serde_json::Value =
        serde_json::from_str(&aws_lake(&["roles", &endpoint, "token-0123456789"])).unwrap();
    let proxy = faults::fault_proxy(endpoint.trim_start_matches("http://"), 0);
    let extra = vec![
        format!("sinks.lake.store.endpoint={}", proxy.url),
        format!(
            "sinks.lake.store.role={}",
            roles["s3_role"].as_str().unwrap()
        ),
        format!(
            "sinks.lake.catalog.role={}",
            roles["glue_role"].as_str().unwrap()
        ),
        "sinks.lake.project_token=token-0123456789".into(),
        "sinks.lake.store.role_session=15s".into(),
        "sinks.lake.catalog.role_session=15s".into(),
    ];
    let _on = Enforced::on(&endpoint);
    let run = s3_command(
        &["run"],
        &brokers,
        &endpoint,
        dir.path(),
        &inp,
        "renew",
        &extra,
    )
    .arg("--no-progress")
    .env("AWS_ACCESS_KEY_ID", roles["access_key"].as_str().unwrap())
    .env(
        "AWS_SECRET_ACCESS_KEY",
        roles["secret_key"].as_str().unwrap(),
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let report = replay(&later, &brokers, &inp.topic, &["--rate", "250"]);
    assert_eq!(report["acked"], messages(&lines), "{report}");
    // The last events' commit (roll.max_age is 1 s), then a clean stop.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let stopped = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(_on);
    // Two calls at the start (the check before anything runs, then the SDK's first use);
    // renewals after that, about one per 15 s session (with sessions of 1 h: 2 calls in all).
    let calls = proxy
        .counts
        .assume_role
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        calls >= 4,
        "the S3 role was assumed {calls} time(s) over a run of 30 s and more"
    );
    check(&endpoint, &inp, "AES256", None);
}

/// The commit's steps, in order, where a crash is injected (`failpoints` feature).
#[cfg(feature = "failpoints")]
const CRASH_POINTS: [&str; 7] = [
    "lake.commit.begun",
    "lake.commit.tables-published",
    "lake.commit.some-objects",
    "s3.multipart.part",
    "lake.commit.objects-written",
    "lake.commit.partitions-published",
    "lake.commit.done",
];

#[cfg(feature = "failpoints")]
#[test]
fn a_crash_at_any_step_of_the_commit_then_a_restart_leaves_each_event_once_in_glue() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input(&brokers, dir.path(), "crash");
    // Parts of 256 KiB (the test server's smallest) so that files go up in several parts.
    let small_parts = "sinks.lake.store.part_size=256KiB".to_string();
    for point in CRASH_POINTS {
        // At the first commit (nothing committed yet), and at the second (on top of a
        // committed one).
        for (when, spec) in [("first", "return"), ("second", "1*off->return")] {
            let case = format!("{point}-{when}").replace('.', "-");
            aws_lake(&["setup", &endpoint, "lake", "analytics"]);
            let state = dir.path().join(&case);
            // One epoch for the multipart case: files big enough for parts. Otherwise
            // commits of at most 1 MiB held: several per run.
            let roll = if point == "s3.multipart.part" {
                "sinks.lake.roll.max_age=1h"
            } else {
                "sinks.lake.roll.max_buffer=1MiB"
            };
            let extra = [small_parts.clone(), roll.to_string()];
            let out = s3_run(&brokers, &endpoint, &state, &inp, &case, &extra)
                .env("FAILPOINTS", format!("{point}={spec}"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && err.contains(&format!("failpoint {point}: crashing")),
                "{case}: the crash was not injected: {err}"
            );
            // Positions live in the commit state, not in Kafka: a new group name resumes
            // them too, without waiting for the dead member's session to time out.
            run_to_s3(
                &brokers,
                &endpoint,
                &state,
                &inp,
                &format!("{case}-again"),
                &extra,
            );
            check(&endpoint, &inp, "AES256", None);
        }
    }
}

/// Large files go up in parts while their windows fill: during a run whose only commit is an
/// hour away, parts arrive in S3 and no object is visible; killed then and restarted, the
/// files are multipart objects and every event is there once.
#[test]
fn large_files_go_up_in_parts_while_they_are_written() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input_of(&brokers, dir.path(), "stream", 60_000);
    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    let extra = [
        "sinks.lake.store.part_size=256KiB".to_string(),
        "sinks.lake.roll.row_group_size=64KiB".into(),
        "sinks.lake.roll.max_age=1h".into(),
    ];
    let mut run = s3_command(
        &["run"],
        &brokers,
        &endpoint,
        dir.path(),
        &inp,
        "stream",
        &extra,
    )
    .arg("--no-progress")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let state: serde_json::Value =
            serde_json::from_str(&aws_lake(&["uploads", &endpoint, "lake"])).unwrap();
        assert_eq!(
            state["objects"].as_array().unwrap().len(),
            0,
            "a file is visible before its commit: {state}"
        );
        let parts: u64 = state["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["parts"].as_u64().unwrap())
            .sum();
        if parts >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no parts went up while the files were written: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    run.kill().unwrap();
    run.wait().unwrap();

    run_to_s3(
        &brokers,
        &endpoint,
        dir.path(),
        &inp,
        "stream-again",
        &extra,
    );
    let state: serde_json::Value =
        serde_json::from_str(&aws_lake(&["uploads", &endpoint, "lake"])).unwrap();
    assert!(
        state["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["etag"].as_str().unwrap().contains('-')),
        "no file was a multipart upload: {state}"
    );
    check(&endpoint, &inp, "AES256", None);
}

#[test]
fn sigkill_during_a_run_then_a_restart_leaves_each_event_once_in_glue() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input(&brokers, dir.path(), "sigkill");
    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    let extra = ["sinks.lake.roll.max_age=200ms".to_string()];
    let mut child = s3_run(&brokers, &endpoint, dir.path(), &inp, "sigkill", &extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once a commit has landed, in the middle of the next ones.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !state_log(&endpoint).iter().any(|e| e["kind"] == "finish") {
        assert!(std::time::Instant::now() < deadline, "nothing committed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    child.kill().unwrap();
    child.wait().unwrap();
    run_to_s3(
        &brokers,
        &endpoint,
        dir.path(),
        &inp,
        "sigkill-again",
        &extra,
    );
    check(&endpoint, &inp, "AES256", None);
}

#[test]
fn s3_throttling_errors_and_dropped_connections_lose_and_duplicate_nothing() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input(&brokers, dir.path(), "faults");
    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    // Of every 8 S3 requests: one throttled, one 500, one connection dropped; of every 8
    // conditional writes (the commit state's log), one lands and its answer is lost. Glue is
    // direct.
    let proxy = faults::fault_proxy(endpoint.trim_start_matches("http://"), 8);
    run_to_s3(
        &brokers,
        &endpoint,
        dir.path(),
        &inp,
        "faults",
        &[
            format!("sinks.lake.store.endpoint={}", proxy.url),
            "sinks.lake.roll.max_buffer=1MiB".into(),
            "sinks.lake.store.part_size=256KiB".into(),
        ],
    );
    let c = &proxy.counts;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        n(&c.throttled) > 2 && n(&c.errors) > 2 && n(&c.dropped) > 2 && n(&c.lost_answers) > 2,
        "too few faults to test anything: {} requests, {} answers lost",
        n(&c.requests),
        n(&c.lost_answers)
    );
    check(&endpoint, &inp, "AES256", None);
}

/// Kafka settings that hand a stopped worker's partitions over quickly (the broker's minimum
/// session is 6 s).
const QUICK_SESSIONS: &str =
    r#"sources.events.options={"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}"#;

/// The worker that wrote the state's first claim.
fn first_claimer(log: &[serde_json::Value]) -> String {
    log.iter()
        .find(|e| e["kind"] == "claim")
        .map(|e| e["worker"].as_str().unwrap().to_string())
        .expect("a claim in the commit state")
}

/// Two workers on separate machines (folders of their own, nothing shared but the bucket,
/// Glue and the broker) in one consumer group split the partitions and, together, land every
/// valid event exactly once: the commit state in the bucket is all they coordinate through.
#[test]
fn two_workers_sharing_only_the_bucket_split_the_partitions_and_land_each_event_once() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input_of(&brokers, dir.path(), "pair", 40_000);
    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    let port = free_port();
    // The first worker's S3 requests go through a proxy that can stall them.
    let proxy = faults::fault_proxy(endpoint.trim_start_matches("http://"), 0);
    let worker = |name: &str, metrics: Option<u16>| {
        let mut extra = vec![
            QUICK_SESSIONS.to_string(),
            "sinks.lake.roll.max_age=200ms".to_string(),
        ];
        if metrics.is_some() {
            extra.push(format!("sinks.lake.store.endpoint={}", proxy.url));
            // Little in flight between its stages: a stalled store stops its reading soon.
            extra.push("runtime.batch_size=100".into());
            extra.push("runtime.channel_capacity=1".into());
        }
        let mut c = s3_run(
            &brokers,
            &endpoint,
            &dir.path().join(name),
            &inp,
            "pair",
            &extra,
        );
        if let Some(p) = metrics {
            c.args(["--metrics-addr", &format!("127.0.0.1:{p}")]);
        }
        c.arg("-v")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The first worker reads fast: held still (SIGSTOP) as soon as it has read its first
    // lines (its partitions claimed), until the broker has the second's request to join, so
    // that the group splits the partitions while most events are still to read. The hold
    // stays under the 6 s session, so no one is fenced.
    let a = worker("a", Some(port));
    assert!(
        wait_for_metric(
            port,
            "sluice_source_lines_total",
            |n| n > 0.0,
            std::time::Duration::from_millis(2),
            std::time::Duration::from_secs(60),
        ),
        "the first worker read nothing"
    );
    stop(a.id());
    let b = worker("b", None);
    let joined = wait_for_rebalance(&brokers, "pair", std::time::Duration::from_secs(4));
    // Resumed, the first learns of the rebalance at its next heartbeat (every second) and
    // hands its partitions over once it has committed what it read. Until then it would go on
    // reading: its store, stalled meanwhile, holds its commits back, and its bounded channels
    // then its reading.
    use std::sync::atomic::Ordering::Relaxed;
    proxy.counts.held.store(true, Relaxed);
    signal(a.id(), "CONT");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    proxy.counts.held.store(false, Relaxed);
    for (who, w) in [("first", a), ("second", b)] {
        let out = w.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{who} worker: {err}");
        // Shown when the test fails: assignments, handovers, commits.
        println!("--- {who} worker:\n{err}");
    }
    check(&endpoint, &inp, "AES256", None);
    let log = state_log(&endpoint);
    let committers: HashSet<&str> = log
        .iter()
        .filter(|e| e["kind"] == "finish")
        .filter_map(|e| e["worker"].as_str())
        .collect();
    assert_eq!(
        committers.len(),
        2,
        "one worker made every commit: the partitions were not split (the broker saw the \
         second join while the first was held: {joined})"
    );
}

/// A worker paused past its session loses its partitions to a worker on another machine; when
/// it comes back, the commit state in the bucket refuses its commit (it is fenced), it removes
/// what it wrote, and every valid event is in Glue's partitions exactly once.
#[test]
fn a_paused_worker_is_fenced_through_the_bucket_and_nothing_is_lost_or_doubled() {
    let Some((brokers, endpoint)) = services() else {
        return;
    };
    let _turn = MOTO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let inp = input(&brokers, dir.path(), "zombie");
    aws_lake(&["setup", &endpoint, "lake", "analytics"]);
    let port = free_port();
    // Long epochs for the first worker: it holds what it read, uncommitted, when paused.
    let a = s3_run(
        &brokers,
        &endpoint,
        &dir.path().join("a"),
        &inp,
        "zombie",
        &[
            QUICK_SESSIONS.to_string(),
            "sinks.lake.roll.max_age=1h".into(),
        ],
    )
    .args(["-v", "--metrics-addr", &format!("127.0.0.1:{port}")])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    assert!(
        wait_for_metric(
            port,
            "sluice_source_lines_total",
            |n| n > 0.0,
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(60),
        ),
        "the first worker read nothing"
    );
    stop(a.id());
    let log = state_log(&endpoint);
    let zombie = first_claimer(&log);
    assert!(
        !log.iter().any(|e| e["kind"] == "finish"),
        "the paused worker had committed already"
    );
    // Once the group has dropped the paused worker (6 s sessions), a second one, elsewhere,
    // takes every partition and reads to the end.
    std::thread::sleep(std::time::Duration::from_secs(9));
    let b = s3_run(
        &brokers,
        &endpoint,
        &dir.path().join("b"),
        &inp,
        "zombie",
        &[QUICK_SESSIONS.to_string()],
    )
    .output()
    .unwrap();
    if !b.status.success() {
        signal(a.id(), "CONT");
        panic!(
            "the second worker failed: {}\n--- first worker:\n{}",
            String::from_utf8_lossy(&b.stderr),
            stop_and_log(a)
        );
    }
    signal(a.id(), "CONT");
    let out = a.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "first worker: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check(&endpoint, &inp, "AES256", None);
    // The paused worker's commit began and was given up, never finished; none of the files
    // it planned is in the bucket.
    let log = state_log(&endpoint);
    let begun: Vec<i64> = log
        .iter()
        .filter(|e| e["kind"] == "begin" && e["worker"] == zombie.as_str())
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(
        !begun.is_empty(),
        "the paused worker never tried to commit: the test did not test fencing"
    );
    let finished: HashSet<i64> = log
        .iter()
        .filter(|e| e["kind"] == "finish")
        .map(|e| e["manifest"].as_i64().unwrap())
        .collect();
    let fenced: Vec<i64> = begun
        .iter()
        .copied()
        .filter(|m| !finished.contains(m))
        .collect();
    assert!(
        !fenced.is_empty(),
        "every commit of the paused worker finished: it was not fenced"
    );
    for m in &fenced {
        assert!(
            log.iter()
                .any(|e| e["kind"] == "abandon" && e["manifest"].as_i64() == Some(*m)),
            "commit {m} of the paused worker was neither finished nor given up"
        );
    }
    let visible: serde_json::Value =
        serde_json::from_str(&aws_lake(&["uploads", &endpoint, "lake"])).unwrap();
    let visible: HashSet<&str> = visible["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    for e in log
        .iter()
        .filter(|e| e["kind"] == "plan" && fenced.contains(&e["manifest"].as_i64().unwrap()))
    {
        for k in e["objects"].as_array().unwrap() {
            assert!(
                !visible.contains(k.as_str().unwrap()),
                "{k} of a fenced commit is in the bucket"
            );
        }
    }
}
