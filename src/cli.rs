//! The command line: `run`, `validate`, `graph`, `schema`, `query`, `gen`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use sluice_connectors::kafka::produce::{self, Pace, ReplayPlan, TopicProducer};
use sluice_connectors::lake::ParquetSinkConfig;
use sluice_connectors::query::{run_sql, OutputFormat};
use sluice_engine::error::Problem;
use sluice_engine::registry::Role;
use sluice_engine::runtime::{self, RunControl};
use sluice_engine::stats::RunStats;
use sluice_engine::topology::{self, LoadOptions, Topology};
use sluice_engine::EngineError;

use crate::gen::{generate, GenOptions};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Mixpanel-shaped events from Kafka or files to Parquet lakes, exactly once"
)]
struct Cli {
    /// More logs (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a topology until its bounded sources end, or until SIGINT/SIGTERM.
    Run {
        topology: PathBuf,
        /// Override a value: --set sinks.lake.store.path=/data/lake (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9898.
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// No live progress line.
        #[arg(long)]
        no_progress: bool,
        /// Stop, after committing, once every assigned Kafka partition has reached the end
        /// offset it had when the run started (for backfills and tests).
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Produce NDJSON files (.gz too) into a Kafka topic, paced, for load tests.
    Replay {
        /// Files to send, in order; `-` reads standard input (`sluice gen ... | sluice replay -`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// Events per second (default: as fast as the broker takes them).
        #[arg(long, conflicts_with = "speed")]
        rate: Option<f64>,
        /// N times the pace recorded in the events' `properties.time` (late events go at
        /// once; a jump of more than an hour of event time is not waited out).
        #[arg(long)]
        speed: Option<f64>,
        /// Start over after the last file, until --max-events or SIGINT.
        #[arg(long = "loop")]
        repeat: bool,
        /// Stop after this many events.
        #[arg(long)]
        max_events: Option<u64>,
        /// Partitions of the topic, when replay creates it (default 8).
        #[arg(long)]
        partitions: Option<i32>,
        /// Send without keys instead of keying by `properties.distinct_id`.
        #[arg(long)]
        no_key: bool,
        /// A librdkafka setting, e.g. -X security.protocol=SASL_SSL (repeatable).
        #[arg(short = 'X', value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// Print the final report as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Check a topology without running it; prints every problem with file:line:column.
    Validate {
        topology: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Also reach what the topology uses (brokers, topics, buckets, the KMS key, Glue,
        /// roles) without moving data, and print the IAM statement each refusal lacks.
        #[arg(long)]
        online: bool,
    },
    /// Print a topology's dataflow.
    Graph {
        topology: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
    },
    /// Print the JSON Schema of topology files, for editors.
    Schema,
    /// Run SQL over the tables a topology's sink has written.
    Query {
        topology: PathBuf,
        sql: String,
        /// The sink whose dataset to query, when the topology has several.
        #[arg(long)]
        sink: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
    },
    /// Generate realistic Mixpanel events (deterministic for a seed).
    Gen {
        #[arg(long, default_value_t = 1000)]
        events: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Share of malformed lines, 0..1.
        #[arg(long, default_value_t = 0.0)]
        bad_fraction: f64,
        /// Share of late events, 0..1.
        #[arg(long, default_value_t = 0.01)]
        late_fraction: f64,
        /// First event time, epoch seconds.
        #[arg(long, default_value_t = 1_700_000_000)]
        start: i64,
        /// Days the events span.
        #[arg(long, default_value_t = 2.0)]
        days: f64,
        /// No awkward names and no type conflicts.
        #[arg(long)]
        clean: bool,
        /// Also give each event three properties drawn from this many custom names
        /// (`custom_0` ...), numbers and strings: to see how cost grows with distinct names.
        #[arg(long, default_value_t = 0, value_name = "N")]
        distinct_props: u64,
        /// Write here instead of stdout; a name ending in .gz is gzipped.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

/// Exit codes: 0 done, 1 failed while running, 2 bad topology or arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose);
    match dispatch(cli.cmd) {
        Ok(code) => code,
        Err(EngineError::Config(problems)) => {
            print_problems(&problems);
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logs(verbose: u8) {
    // aws_config warns of a refused AssumeRole that sluice reports itself, with its cause.
    let default = match verbose {
        0 => "warn,aws_config::sts=error",
        1 => "info,aws_config::sts=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs every component's online checks, printing each as it completes; false when any
/// failed.
fn check_online(t: &Topology) -> bool {
    let mut failed = 0;
    let mut total = 0;
    for n in &t.nodes {
        let role = match n.role {
            Role::Source => "sources",
            Role::Operator => "operators",
            Role::Sink => "sinks",
        };
        for c in n.component.check_online() {
            total += 1;
            match &c.error {
                None => println!("  ok      {role}.{}: {}", n.name, c.what),
                Some(e) => {
                    failed += 1;
                    println!("  FAILED  {role}.{}: {}\n          {e}", n.name, c.what);
                    if let Some(m) = &c.missing {
                        println!("          missing IAM statement:");
                        for line in m.lines() {
                            println!("            {line}");
                        }
                    }
                }
            }
        }
    }
    if failed == 0 {
        println!("online: {total} check(s) passed");
    } else {
        println!("online: {failed} of {total} check(s) failed");
    }
    failed == 0
}

fn print_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("error: {p}");
    }
    eprintln!("{} problem(s); nothing ran.", problems.len());
}

fn load(path: &Path, sets: &[String]) -> Result<Topology, EngineError> {
    let registry = crate::registry();
    let env = |k: &str| std::env::var(k).ok();
    topology::load_file(path, &LoadOptions { sets, env: &env }, &registry)
        .map_err(EngineError::Config)
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, EngineError> {
    match cmd {
        Cmd::Validate {
            topology,
            sets,
            online,
        } => {
            let t = load(&topology, &sets)?;
            println!(
                "{}: ok ({} sources, {} operators, {} sinks)",
                topology.display(),
                t.nodes.iter().filter(|n| n.role == Role::Source).count(),
                t.nodes.iter().filter(|n| n.role == Role::Operator).count(),
                t.nodes.iter().filter(|n| n.role == Role::Sink).count()
            );
            if online && !check_online(&t) {
                return Ok(ExitCode::from(2));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Graph { topology, sets } => {
            let t = load(&topology, &sets)?;
            print!("{}", topology::render_graph(&t));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Schema => {
            let s = topology::json_schema(&crate::registry());
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Query {
            topology,
            sql,
            sink,
            format,
            sets,
        } => {
            let t = load(&topology, &sets)?;
            let sinks: Vec<_> = t
                .nodes
                .iter()
                .filter(|n| {
                    n.component
                        .as_any()
                        .downcast_ref::<ParquetSinkConfig>()
                        .is_some()
                })
                .filter(|n| sink.as_deref().is_none_or(|s| s == n.name))
                .collect();
            let node = match sinks.as_slice() {
                [one] => one,
                [] => {
                    return Err(EngineError::config(
                        match &sink {
                            Some(s) => format!("no lake sink named `{s}`"),
                            None => "the topology has no lake sink".into(),
                        },
                        "name a lake sink of the topology with --sink",
                    ))
                }
                _ => {
                    return Err(EngineError::config(
                        "the topology has several lake sinks",
                        format!(
                            "choose one with --sink: {}",
                            sinks
                                .iter()
                                .map(|n| n.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            };
            let cfg = node
                .component
                .as_any()
                .downcast_ref::<ParquetSinkConfig>()
                .ok_or_else(|| EngineError::Internal("sink type changed".into()))?;
            let ds = cfg.open_dataset()?;
            let fmt = match format {
                Format::Table => OutputFormat::Table,
                Format::Csv => OutputFormat::Csv,
                Format::Json => OutputFormat::Json,
            };
            let out = run_sql(ds.catalog, ds.store, ds.publisher, &ds.database, &sql, fmt)?;
            println!("{}", out.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gen {
            events,
            seed,
            bad_fraction,
            late_fraction,
            start,
            days,
            clean,
            distinct_props,
            output,
        } => {
            let o = GenOptions {
                events,
                seed,
                bad_fraction,
                late_fraction,
                start,
                days,
                clean,
                distinct_props,
                ..Default::default()
            };
            let res = match &output {
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::new(stdout.lock());
                    generate(&o, &mut w).and_then(|r| w.flush().map(|_| r))
                }
                Some(p) => {
                    let f = std::fs::File::create(p).map_err(|e| {
                        EngineError::external(format!("creating {}", p.display()), e)
                    })?;
                    if p.extension().is_some_and(|e| e == "gz") {
                        // Lines reach the encoder through a buffer of their own: written
                        // to it a field at a time, deflate cost four times what generating did.
                        let mut w = std::io::BufWriter::with_capacity(
                            1 << 16,
                            flate2::write::GzEncoder::new(f, flate2::Compression::default()),
                        );
                        generate(&o, &mut w).and_then(|r| {
                            let gz = w.into_inner().map_err(|e| e.into_error())?;
                            gz.finish().map(|_| r)
                        })
                    } else {
                        let mut w = std::io::BufWriter::new(f);
                        generate(&o, &mut w).and_then(|r| w.flush().map(|_| r))
                    }
                }
            };
            match res {
                Ok((good, bad)) => {
                    eprintln!("generated {good} events and {bad} malformed lines");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
                Err(e) => Err(EngineError::external("writing events", e)),
            }
        }
        Cmd::Run {
            topology,
            sets,
            metrics_addr,
            no_progress,
            until_caught_up,
        } => run(&topology, &sets, metrics_addr, no_progress, until_caught_up),
        Cmd::Replay {
            files,
            brokers,
            topic,
            rate,
            speed,
            repeat,
            max_events,
            partitions,
            no_key,
            options,
            json,
            no_progress,
        } => {
            let mut opts = sluice_connectors::kafka::ClientOptions::default();
            for o in &options {
                let Some((k, v)) = o.split_once('=') else {
                    return Err(EngineError::config(
                        format!("-X {o}: expected KEY=VALUE"),
                        "write it like -X security.protocol=SASL_SSL",
                    ));
                };
                opts.0.insert(k.trim().to_string(), v.trim().to_string());
            }
            let pace = match (rate, speed) {
                (Some(r), _) if r > 0.0 => Pace::Rate(r),
                (_, Some(s)) if s > 0.0 => Pace::Speed(s),
                (None, None) => Pace::Full,
                _ => {
                    return Err(EngineError::config(
                        "--rate and --speed must be above 0",
                        "give a positive number",
                    ))
                }
            };
            if repeat && files.iter().any(|f| f.as_os_str() == "-") {
                return Err(EngineError::config(
                    "--loop cannot read standard input again",
                    "write the events to a file (sluice gen -o events.ndjson.gz) and loop over it",
                ));
            }
            for f in &files {
                if f.as_os_str() != "-" && !f.is_file() {
                    return Err(EngineError::config(
                        format!("{} is not a file", f.display()),
                        "name NDJSON files (.gz too); make them with `sluice gen -o`",
                    ));
                }
            }
            replay(
                &brokers,
                &opts,
                &topic,
                partitions,
                &ReplayPlan {
                    files,
                    pace,
                    repeat,
                    max_events,
                    key_by_distinct_id: !no_key,
                },
                json,
                no_progress,
            )
        }
    }
}

/// A flag SIGINT and SIGTERM raise: the first asks for a clean stop, a second ends the process
/// at once.
fn stop_on_signals() -> Result<Arc<AtomicBool>, EngineError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .map_err(|e| EngineError::external("installing signal handlers", e))?;
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| EngineError::external("installing signal handlers", e))?;
    }
    Ok(stop)
}

fn replay(
    brokers: &str,
    options: &sluice_connectors::kafka::ClientOptions,
    topic: &str,
    partitions: Option<i32>,
    plan: &ReplayPlan,
    json: bool,
    no_progress: bool,
) -> Result<ExitCode, EngineError> {
    let (n, created) = produce::ensure_topic(brokers, options, topic, partitions)?;
    eprintln!(
        "topic {topic}: {n} partitions{}",
        if created { " (created)" } else { "" }
    );
    let producer = TopicProducer::new(brokers, options, topic)?;
    let stop = stop_on_signals()?;
    let bar = (!no_progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b
    });
    let started = Instant::now();
    let mut progress = |d: &produce::Delivery| {
        if let Some(b) = &bar {
            let sent = d.sent.load(std::sync::atomic::Ordering::Relaxed);
            let acked = d.acked.load(std::sync::atomic::Ordering::Relaxed);
            let rate = sent as f64 / started.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!(
                "{sent} sent, {acked} acknowledged, {rate:.0} events/s, {} retried, {} failed",
                d.retried.load(std::sync::atomic::Ordering::Relaxed),
                d.failed.load(std::sync::atomic::Ordering::Relaxed)
            ));
            b.tick();
        }
    };
    let stop_flag = stop.clone();
    let report = produce::replay(
        &producer,
        plan,
        &move || stop_flag.load(std::sync::atomic::Ordering::SeqCst),
        &mut progress,
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let unacked = report.events.saturating_sub(report.acked + report.failed);
    eprintln!(
        "sent {} events in {:.1} s ({:.0} events/s); {} acknowledged ({:.1} MB, {:.1} MB/s), {} retried, {} failed{}",
        report.events,
        report.seconds,
        report.events_per_second,
        report.acked,
        report.bytes as f64 / 1e6,
        report.mb_per_second,
        report.retried,
        report.failed,
        if unacked > 0 { format!(", {unacked} unacknowledged") } else { String::new() }
    );
    if let Some(e) = &report.last_error {
        eprintln!("last delivery error: {e}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(&report)
                .map_err(|e| EngineError::Internal(format!("report: {e}")))?
        );
    }
    if report.failed > 0 || unacked > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run(
    path: &Path,
    sets: &[String],
    metrics_addr: Option<std::net::SocketAddr>,
    no_progress: bool,
    until_caught_up: bool,
) -> Result<ExitCode, EngineError> {
    let t = load(path, sets)?;
    if let Some(addr) = metrics_addr {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| EngineError::external(format!("serving metrics on {addr}"), e))?;
        eprintln!("metrics on http://{addr}/metrics");
    }
    let stop = stop_on_signals()?;
    let stats = Arc::new(RunStats::default());
    let control = Arc::new(RunControl::new(stop.clone()).until_caught_up(until_caught_up));
    let started = Instant::now();
    let progress =
        (!no_progress && std::io::stderr().is_terminal()).then(|| spawn_progress(stats.clone()));
    let registry = crate::registry();
    let result = runtime::run(&t, &registry, control, stats.clone());
    if let Some((done, handle)) = progress {
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = handle.join();
    }
    result?;
    print_summary(
        &t,
        path,
        &stats,
        started.elapsed(),
        stop.load(std::sync::atomic::Ordering::SeqCst),
    );
    Ok(ExitCode::SUCCESS)
}

fn spawn_progress(stats: Arc<RunStats>) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let h = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new_spinner();
        let started = Instant::now();
        while !d.load(std::sync::atomic::Ordering::SeqCst) {
            let read = RunStats::get(&stats.lines_read);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "read {} lines  committed: {} rows, {} dead letters, {} files  {:.0} events/s",
                read,
                RunStats::get(&stats.rows_written),
                RunStats::get(&stats.dead_letters),
                RunStats::get(&stats.files_written),
                read as f64 / secs
            ));
            bar.tick();
            std::thread::sleep(Duration::from_millis(200));
        }
        bar.finish_and_clear();
    });
    (done, h)
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn print_summary(t: &Topology, path: &Path, s: &RunStats, elapsed: Duration, stopped: bool) {
    let secs = elapsed.as_secs_f64();
    let read = RunStats::get(&s.lines_read);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "sluice: {} in {secs:.2} s",
        if stopped { "stopped cleanly" } else { "done" }
    );
    let _ = writeln!(
        out,
        "  events read      {read} lines ({})",
        human_bytes(RunStats::get(&s.bytes_read))
    );
    let _ = writeln!(out, "  rows written     {}", RunStats::get(&s.rows_written));
    for (table, n) in s.rows_per_table() {
        let _ = writeln!(out, "    {table:<32} {n}");
    }
    let _ = writeln!(out, "  dead letters     {}", RunStats::get(&s.dead_letters));
    let skipped = RunStats::get(&s.already_committed);
    if skipped > 0 {
        let _ = writeln!(out, "  already committed by an earlier run: {skipped}");
    }
    let _ = writeln!(
        out,
        "  files            {} ({})",
        RunStats::get(&s.files_written),
        human_bytes(RunStats::get(&s.bytes_written))
    );
    let _ = writeln!(
        out,
        "  throughput       {:.0} events/s",
        read as f64 / secs.max(1e-6)
    );
    if let Some(sink) = t.nodes.iter().find(|n| {
        n.component
            .as_any()
            .downcast_ref::<ParquetSinkConfig>()
            .is_some()
    }) {
        let table = s
            .rows_per_table()
            .keys()
            .find_map(|k| {
                k.strip_prefix(&format!("{}.", sink.name))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "mp_master_event".into());
        let _ = writeln!(
            out,
            "next: sluice query {} \"SELECT count(*) FROM {table}\"",
            path.display()
        );
    }
}
