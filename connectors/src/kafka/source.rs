//! The Kafka source: a member of a consumer group that claims what Kafka assigns it.
//!
//! - **Assignment.** Kafka assigns partitions; the source claims them in the sinks' catalogs
//!   and starts each at the catalog's committed position (or at `start` for a partition
//!   nothing was committed for). A partition it already owned continues where it was.
//! - **Revocation (handover).** Buffered, unsent messages of the revoked partitions are
//!   dropped, the sinks are asked to commit now, and the source waits (up to
//!   `handover_timeout`) until what it sent is committed, so that the next owner starts where
//!   this one ended. If the wait times out, the next owner's claim fences this worker's commit
//!   and the work is read again: slower, never wrong.
//! - **Batches** are per partition: a partition's messages go out together when `batch_size`
//!   is reached or after `linger`.
//! - **Offsets** are never auto-committed. Every `offset_commit_interval` the source copies the
//!   catalog's committed positions to Kafka, so lag shows in Kafka's tools.
//! - **`--until-caught-up`**: once every assigned partition has reached the end it had when
//!   first assigned, the source asks the sinks to commit and ends when they have.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::{Batch, RawLines};
use sluice_engine::component::{Source, SourceContext};
use sluice_engine::format::{DecoderSettings, RecordsFormat};
use sluice_engine::ownership::Coordinator;
use sluice_engine::registry::{BuildContext, Component, Issue, OnlineCheck};
use sluice_engine::runtime::Partitions;
use sluice_engine::stats::RunStats;
use sluice_engine::units::parse_duration;
use sluice_engine::{EngineError, Result};

use super::{partition_key, ClientOptions};

/// Consumes one or more Kafka topics as a member of a consumer group.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to consume.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Or: a regular expression of topic names (librdkafka's syntax), e.g. `events-.*`.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// The consumer group. Workers with the same group (and topology) share the partitions.
    pub group: String,
    /// Where a partition with nothing committed starts: `earliest`, `latest`, or a time
    /// (`2025-01-31T00:00:00Z`, or epoch milliseconds).
    #[serde(default = "default_start")]
    pub start: String,
    /// How messages are decoded (`mixpanel` or `records`), as for files.
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default)]
    pub records: Option<RecordsFormat>,
    /// librdkafka settings passed through: `security.protocol`, `sasl.*`, `ssl.*`,
    /// `session.timeout.ms`, `group.instance.id`...
    #[serde(default)]
    pub options: ClientOptions,
    /// How long a partition's partial batch waits for more messages.
    #[serde(default = "default_linger")]
    pub linger: String,
    /// How often the committed positions are copied to Kafka's offsets (for lag tools).
    #[serde(default = "default_commit_interval")]
    pub offset_commit_interval: String,
    /// On revocation, how long to wait for the sinks to commit what was read.
    #[serde(default = "default_handover")]
    pub handover_timeout: String,
}

fn default_start() -> String {
    "earliest".into()
}
fn default_format() -> String {
    "mixpanel".into()
}
fn default_linger() -> String {
    "100ms".into()
}
fn default_commit_interval() -> String {
    "5s".into()
}
fn default_handover() -> String {
    "30s".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    /// Epoch milliseconds.
    Time(i64),
}

fn parse_start(s: &str) -> std::result::Result<Start, String> {
    match s.trim() {
        "earliest" => Ok(Start::Earliest),
        "latest" => Ok(Start::Latest),
        t => {
            if let Ok(ms) = t.parse::<i64>() {
                return Ok(Start::Time(ms));
            }
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| Start::Time(d.timestamp_millis()))
                .map_err(|_| {
                    format!("`{t}` is not earliest, latest, an RFC 3339 time or epoch milliseconds")
                })
        }
    }
}

struct Settings {
    start: Start,
    linger: Duration,
    commit_every: Duration,
    handover: Duration,
}

impl KafkaSourceConfig {
    fn settings(&self) -> std::result::Result<Settings, Vec<Issue>> {
        let mut issues = Vec::new();
        let mut dur = |key: &str, v: &str| match parse_duration(v) {
            Ok(d) => d,
            Err(e) => {
                issues.push(Issue::at(key, e, "write it like 100ms, 5s or 1m"));
                Duration::ZERO
            }
        };
        let linger = dur("linger", &self.linger);
        let commit_every = dur("offset_commit_interval", &self.offset_commit_interval);
        let handover = dur("handover_timeout", &self.handover_timeout);
        let start = match parse_start(&self.start) {
            Ok(s) => s,
            Err(e) => {
                issues.push(Issue::at(
                    "start",
                    e,
                    "use earliest, latest, or a time like 2025-01-31T00:00:00Z",
                ));
                Start::Earliest
            }
        };
        if issues.is_empty() {
            Ok(Settings {
                start,
                linger,
                commit_every,
                handover,
            })
        } else {
            Err(issues)
        }
    }
}

impl Component for KafkaSourceConfig {
    /// The brokers answer, and the topics (or at least one match of the pattern) exist.
    fn check_online(&self) -> Vec<OnlineCheck> {
        let what = format!("Kafka brokers {}", self.brokers);
        let consumer: BaseConsumer = match self.options.client_config(&self.brokers).create() {
            Ok(c) => c,
            Err(e) => return vec![OnlineCheck::failed(what, e.to_string())],
        };
        let meta = match consumer.fetch_metadata(None, Duration::from_secs(15)) {
            Ok(m) => m,
            Err(e) => {
                return vec![OnlineCheck::failed(
                    what,
                    format!("{e} (are the brokers and the security settings in `options` right?)"),
                )]
            }
        };
        let mut checks = vec![OnlineCheck::ok(format!(
            "{what}: {} broker(s)",
            meta.brokers().len()
        ))];
        let partitions = |name: &str| {
            meta.topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none())
                .map(|t| t.partitions().len())
        };
        for t in &self.topics {
            let what = format!("Kafka topic {t}");
            checks.push(match partitions(t) {
                Some(n) => OnlineCheck::ok(format!("{what}: {n} partition(s)")),
                None => OnlineCheck::failed(what, "not on the brokers (or not readable)"),
            });
        }
        if let Some(p) = &self.topic_pattern {
            let what = format!("Kafka topics matching {p}");
            // As librdkafka subscribes: anchored at the start only.
            let anchored = format!("^(?:{})", p.trim_start_matches('^'));
            checks.push(match regex::Regex::new(&anchored) {
                Ok(re) => {
                    let n = meta
                        .topics()
                        .iter()
                        .filter(|t| re.is_match(t.name()))
                        .count();
                    if n > 0 {
                        OnlineCheck::ok(format!("{what}: {n} topic(s)"))
                    } else {
                        OnlineCheck::failed(what, "none yet: the source waits for them")
                    }
                }
                Err(e) => OnlineCheck::failed(what, e.to_string()),
            });
        }
        checks
    }

    fn validate(&self) -> Vec<Issue> {
        let mut issues = self.settings().err().unwrap_or_default();
        if self.brokers.trim().is_empty() {
            issues.push(Issue::at(
                "brokers",
                "`brokers` is empty",
                "name the bootstrap brokers, e.g. 127.0.0.1:9092",
            ));
        }
        if self.group.trim().is_empty() {
            issues.push(Issue::at(
                "group",
                "`group` is empty",
                "name the consumer group that the workers of this topology share",
            ));
        }
        match (&self.topics.is_empty(), &self.topic_pattern) {
            (true, None) => issues.push(Issue::at(
                "topics",
                "no topic to consume",
                "list `topics`, or give a `topic_pattern`",
            )),
            (false, Some(_)) => issues.push(Issue::at(
                "topic_pattern",
                "both `topics` and `topic_pattern` are set",
                "keep one of them",
            )),
            _ => {}
        }
        if self.topics.iter().any(|t| t.trim().is_empty()) {
            issues.push(Issue::at("topics", "a topic name is empty", "remove it"));
        }
        for (key, msg, hint) in self.options.problems() {
            issues.push(Issue::at(&format!("options.{key}"), msg, hint));
        }
        if let Err(i) = DecoderSettings::of(&self.format, &self.records) {
            issues.push(i);
        }
        issues
    }
    fn describe(&self) -> String {
        let what = match &self.topic_pattern {
            Some(p) => format!("/{p}/"),
            None => self.topics.join(","),
        };
        format!("{what} @ {} (group {})", self.brokers, self.group)
    }
    fn format(&self) -> Option<(&str, DecoderSettings)> {
        // `validate` reported a mismatch already; the topology does not run with one.
        let settings = DecoderSettings::of(&self.format, &self.records).unwrap_or_default();
        Some((&self.format, settings))
    }
    fn build_source(&self, cx: &BuildContext) -> Result<Box<dyn Source>> {
        let settings = self.settings().map_err(|issues| {
            EngineError::config(
                issues
                    .iter()
                    .map(|i| i.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
                "fix the kafka source settings",
            )
        })?;
        let subscription = match &self.topic_pattern {
            Some(p) if p.starts_with('^') => vec![p.clone()],
            Some(p) => vec![format!("^{p}")],
            None => self.topics.clone(),
        };
        Ok(Box::new(KafkaSource {
            brokers: self.brokers.clone(),
            group: self.group.clone(),
            subscription,
            options: self.options.clone(),
            settings,
            stats: cx.stats.clone(),
            consumer: None,
            shared: None,
            generation: 0,
            last_offset_commit: Instant::now(),
            until_caught_up: false,
        }))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One assigned partition.
struct Part {
    key: String,
    /// The run's number for it (in positions).
    pid: u32,
    /// Where reading started at assignment: the rewind target when nothing is committed.
    origin: i64,
    /// Next offset after the last message sent downstream.
    sent: i64,
    /// The high watermark when the partition was first assigned (for `--until-caught-up`).
    end: i64,
    buf: RawLines,
    buffered_since: Option<Instant>,
}

#[derive(Default)]
struct State {
    assigned: BTreeMap<(String, i32), Part>,
    /// Where revoked partitions stood, for when they come back to this worker.
    released: HashMap<(String, i32), i64>,
    /// First-assignment ends, kept across rebalances.
    ends: HashMap<(String, i32), i64>,
    assigned_once: bool,
    /// Between an eager revocation and the assignment that follows it: what this worker will
    /// hold is not known yet, so it cannot be caught up.
    rebalancing: bool,
    error: Option<EngineError>,
    /// The key of the message being buffered, kept to reuse its allocation.
    lookup: (String, i32),
}

struct Shared {
    source: String,
    coordinator: Arc<Coordinator>,
    partitions: Arc<Partitions>,
    start: Start,
    handover: Duration,
    closing: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn on_assign(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let keys: Vec<String> = parts.iter().map(|(t, p)| partition_key(t, *p)).collect();
        let claims = match self.coordinator.claim(&keys) {
            Ok(c) => c,
            Err(e) => {
                self.state().error = Some(e);
                return;
            }
        };
        let mut out = TopicPartitionList::new();
        let mut st = self.state();
        st.assigned_once = true;
        st.rebalancing = false;
        for ((topic, p), key) in parts.into_iter().zip(keys) {
            let claim = claims.get(&key).copied().unwrap_or_default();
            let released = st.released.remove(&(topic.clone(), p));
            let end = match st.ends.get(&(topic.clone(), p)) {
                Some(e) => *e,
                None => match consumer.fetch_watermarks(&topic, p, Duration::from_secs(30)) {
                    Ok((_, high)) => {
                        st.ends.insert((topic.clone(), p), high);
                        high
                    }
                    Err(e) => {
                        st.error = Some(EngineError::external(
                            format!("reading the end offset of {key}"),
                            e,
                        ));
                        return;
                    }
                },
            };
            let offset = match (claim.continued, released, claim.next_offset) {
                (true, Some(at), _) => at,
                (_, _, Some(n)) => n as i64,
                _ => match self.resolve_start(consumer, &topic, p) {
                    Ok(o) => o,
                    Err(e) => {
                        st.error = Some(e);
                        return;
                    }
                },
            };
            if let Err(e) = out.add_partition_offset(&topic, p, Offset::Offset(offset)) {
                st.error = Some(EngineError::external(format!("assigning {key}"), e));
                return;
            }
            tracing::info!(source = %self.source, partition = %key, offset, "assigned");
            let pid = self.partitions.intern(&self.source, &key);
            st.assigned.insert(
                (topic, p),
                Part {
                    key,
                    pid,
                    origin: offset,
                    sent: offset,
                    end,
                    buf: RawLines {
                        partition: pid,
                        ..Default::default()
                    },
                    buffered_since: None,
                },
            );
        }
        drop(st);
        let result = if cooperative(consumer) {
            consumer.incremental_assign(&out)
        } else {
            consumer.assign(&out)
        };
        if let Err(e) = result {
            self.state().error = Some(EngineError::external("assigning partitions", e));
        }
    }

    /// The numeric offset `start` means for a partition nothing was committed for.
    fn resolve_start(&self, consumer: &BaseConsumer<Ctx>, topic: &str, p: i32) -> Result<i64> {
        let timeout = Duration::from_secs(30);
        let key = partition_key(topic, p);
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| EngineError::external(format!("reading the offsets of {key}"), e))?;
        Ok(match self.start {
            Start::Earliest => low,
            Start::Latest => high,
            Start::Time(ms) => {
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(topic, p, Offset::Offset(ms))
                    .map_err(|e| EngineError::external(format!("seeking {key} by time"), e))?;
                let got = consumer
                    .offsets_for_times(q, timeout)
                    .map_err(|e| EngineError::external(format!("seeking {key} by time"), e))?;
                match got.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    // No message at or after that time.
                    _ => high,
                }
            }
        })
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Ctx>, tpl: &TopicPartitionList) {
        let revoked: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut targets: Vec<(String, i64)> = Vec::new();
        {
            let mut st = self.state();
            // An eager revocation (everything) is always followed by an assignment; an
            // incremental one may not be.
            st.rebalancing = !cooperative(consumer);
            for k in &revoked {
                if let Some(part) = st.assigned.remove(k) {
                    // Unsent messages are dropped: the next owner reads them.
                    if part.sent > part.origin {
                        targets.push((part.key.clone(), part.sent));
                    }
                    st.released.insert(k.clone(), part.sent);
                }
            }
        }
        if !self.closing.load(Ordering::SeqCst) && !targets.is_empty() {
            self.hand_over(&targets);
        }
        tracing::info!(source = %self.source, partitions = revoked.len(), "revoked");
        let result = if cooperative(consumer) {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "unassigning partitions");
        }
    }

    /// Waits until the sinks have committed everything sent from the revoked partitions.
    fn hand_over(&self, targets: &[(String, i64)]) {
        let was = self.coordinator.rewind.flush_requested();
        self.coordinator.rewind.request_flush(true);
        let deadline = Instant::now() + self.handover;
        loop {
            match self.coordinator.committed() {
                Ok(c) => {
                    if targets
                        .iter()
                        .all(|(k, sent)| c.get(k).is_some_and(|v| *v as i64 >= *sent))
                    {
                        tracing::info!(source = %self.source, partitions = targets.len(), "handed over after committing");
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading committed positions during a handover");
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(source = %self.source, "handover timed out: the next owner reads again what was not committed");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.coordinator.rewind.request_flush(was);
    }
}

fn cooperative(consumer: &BaseConsumer<Ctx>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        rdkafka::consumer::RebalanceProtocol::Cooperative
    )
}

struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", %fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", %fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", %fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", %fac, "{log_message}"),
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared.on_assign(consumer, tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.shared.on_revoke(consumer, tpl)
            }
            other => {
                tracing::error!(?other, "rebalance failed; leaving the assignment");
                let mut st = self.shared.state();
                st.assigned.clear();
                // The group assigns again once rejoined.
                st.rebalancing = true;
                drop(st);
                let _ = consumer.unassign();
            }
        }
    }
}

/// The consumer's fetch queue, unless `options` say otherwise. librdkafka prefetches up to
/// 64 MiB, then waits a whole second once it is full: a run catching up on a backlog held the
/// 64 MiB and idled. 16 MiB is about 0.2 s of this pipeline's reading on two cores, refilled
/// every 10 ms. On W2 (200,000 events, 8 partitions, a local broker) wall time fell from 2.4
/// to 1.7 s, page faults by a fifth and peak memory by ~50 MiB, for about the same CPU.
const FETCH_DEFAULTS: &[(&str, &str)] = &[
    ("queued.max.messages.kbytes", "16384"),
    ("fetch.queue.backoff.ms", "10"),
];

pub struct KafkaSource {
    brokers: String,
    group: String,
    subscription: Vec<String>,
    options: ClientOptions,
    settings: Settings,
    stats: Arc<RunStats>,
    consumer: Option<BaseConsumer<Ctx>>,
    shared: Option<Arc<Shared>>,
    generation: u64,
    last_offset_commit: Instant,
    until_caught_up: bool,
}

impl KafkaSource {
    fn parts(&self) -> Result<(&BaseConsumer<Ctx>, &Arc<Shared>)> {
        match (&self.consumer, &self.shared) {
            (Some(c), Some(s)) => Ok((c, s)),
            _ => Err(EngineError::Internal(
                "kafka source used before open".into(),
            )),
        }
    }

    /// After a fenced commit: every assigned partition goes back to its committed position.
    fn rewind_if_asked(&mut self) -> Result<()> {
        let (consumer, shared) = self.parts()?;
        let wanted = shared.coordinator.rewind.current();
        if wanted <= self.generation {
            return Ok(());
        }
        let committed = shared.coordinator.committed()?;
        let mut st = shared.state();
        st.released.clear();
        for ((topic, p), part) in st.assigned.iter_mut() {
            let target = committed
                .get(&part.key)
                .map(|v| *v as i64)
                .unwrap_or(part.origin);
            consumer
                .seek(topic, *p, Offset::Offset(target), Duration::from_secs(30))
                .map_err(|e| EngineError::external(format!("rewinding {}", part.key), e))?;
            part.sent = target;
            part.buf.lines.clear();
            part.buf.buf.clear();
            part.buffered_since = None;
        }
        drop(st);
        tracing::warn!(generation = wanted, "rewound to the committed positions");
        self.generation = wanted;
        Ok(())
    }

    /// A partition's buffered messages, if full or old enough.
    fn take_ready(&self, max_lines: usize, everything: bool) -> Result<Option<Batch>> {
        let (_, shared) = self.parts()?;
        let mut st = shared.state();
        let now = Instant::now();
        let ready = st.assigned.iter_mut().find(|(_, part)| {
            !part.buf.lines.is_empty()
                && (everything
                    || part.buf.lines.len() >= max_lines
                    || part
                        .buffered_since
                        .is_some_and(|t| now.duration_since(t) >= self.settings.linger))
        });
        let Some((_, part)) = ready else {
            return Ok(None);
        };
        // The partition's next batch starts with the room this one took, and an eighth more:
        // grown from nothing by doubling, each batch's bytes were copied once more and twice
        // the pages faulted in (7% of a W2 run's CPU samples).
        let (bytes, lines) = (part.buf.buf.len(), part.buf.lines.len());
        let raw = std::mem::replace(
            &mut part.buf,
            RawLines {
                buf: Vec::with_capacity(bytes + bytes / 8),
                lines: Vec::with_capacity(lines + lines / 8),
                partition: part.pid,
            },
        );
        part.buffered_since = None;
        RunStats::add(&self.stats.lines_read, raw.lines.len() as u64);
        RunStats::add(&self.stats.bytes_read, raw.buf.len() as u64);
        metrics::counter!("sluice_source_lines_total").increment(raw.lines.len() as u64);
        let last = raw.lines.last().map(|l| l.0).unwrap_or_default();
        part.sent = last as i64 + 1;
        Ok(Some(Batch {
            progress: vec![(part.pid, last + 1)],
            raw,
            generation: self.generation,
            ..Default::default()
        }))
    }

    /// Copies the catalog's committed positions to Kafka's group offsets, for lag tools: every
    /// `offset_commit_interval`, and (`last`) once more, waiting for the broker, when the run
    /// is caught up or the source closes.
    fn commit_offsets(&mut self, last: bool) {
        if !last && self.last_offset_commit.elapsed() < self.settings.commit_every {
            return;
        }
        self.last_offset_commit = Instant::now();
        let Ok((consumer, shared)) = self.parts() else {
            return;
        };
        let committed = match shared.coordinator.committed() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading committed positions");
                return;
            }
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), part) in shared.state().assigned.iter() {
            if let Some(o) = committed.get(&part.key) {
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o as i64));
            }
        }
        if tpl.count() > 0 {
            let mode = if last {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            if let Err(e) = consumer.commit(&tpl, mode) {
                tracing::debug!(error = %e, "copying offsets to Kafka");
            }
        }
    }

    /// Reads messages already fetched into their partitions' buffers: waits up to 50 ms for
    /// the first, then takes what is queued without waiting, until a partition holds a batch
    /// or `max_lines` were read. True when the queue ran dry.
    fn read_messages(&mut self, max_lines: usize) -> Result<bool> {
        let (consumer, shared) = self.parts()?;
        for i in 0..max_lines.max(1) {
            let wait = if i == 0 {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            };
            match consumer.poll(wait) {
                None => return Ok(true),
                Some(Ok(m)) => {
                    let payload = m.payload().unwrap_or_default();
                    let offset = m.offset();
                    let mut st = shared.state();
                    let State {
                        assigned, lookup, ..
                    } = &mut *st;
                    // Per message: the lookup key's buffer is reused, not allocated.
                    lookup.0.clear();
                    lookup.0.push_str(m.topic());
                    lookup.1 = m.partition();
                    let Some(part) = assigned.get_mut(lookup) else {
                        continue;
                    };
                    if offset < part.sent {
                        continue;
                    }
                    let start = part.buf.buf.len() as u32;
                    part.buf.buf.extend_from_slice(payload);
                    part.buf
                        .lines
                        .push((offset as u64, start, part.buf.buf.len() as u32));
                    if part.buffered_since.is_none() {
                        part.buffered_since = Some(Instant::now());
                    }
                    if part.buf.lines.len() >= max_lines {
                        return Ok(false);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(true),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer");
                    return Ok(false);
                }
            }
        }
        Ok(false)
    }

    /// With `--until-caught-up`: true once every assigned partition is read to its end and
    /// everything read is committed. Raises the flush request when reading is done.
    fn caught_up(&self) -> Result<bool> {
        let (consumer, shared) = self.parts()?;
        let st = shared.state();
        if !st.assigned_once || st.rebalancing {
            return Ok(false);
        }
        let positions = if st.assigned.is_empty() {
            None
        } else {
            consumer.position().ok()
        };
        for ((topic, p), part) in st.assigned.iter() {
            if !part.buf.lines.is_empty() {
                return Ok(false);
            }
            let fetched = positions
                .as_ref()
                .and_then(|tpl| tpl.find_partition(topic, *p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(part.sent);
            if part.sent.max(fetched) < part.end {
                return Ok(false);
            }
        }
        let targets: Vec<(String, i64, i64)> = st
            .assigned
            .values()
            .map(|p| (p.key.clone(), p.sent, p.origin))
            .collect();
        let through: Vec<(u32, u64)> = st
            .assigned
            .values()
            .map(|p| (p.pid, p.sent.max(0) as u64))
            .collect();
        drop(st);
        shared.coordinator.rewind.request_flush_through(through);
        let committed = shared.coordinator.committed()?;
        Ok(targets.iter().all(|(k, sent, origin)| {
            sent <= origin || committed.get(k).is_some_and(|c| *c as i64 >= *sent)
        }))
    }
}

impl Source for KafkaSource {
    fn open(&mut self, cx: &SourceContext) -> Result<()> {
        let shared = Arc::new(Shared {
            source: cx.name.clone(),
            coordinator: cx.coordinator.clone(),
            partitions: cx.partitions.clone(),
            start: self.settings.start,
            handover: self.settings.handover,
            closing: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let mut config = self.options.client_config(&self.brokers);
        for (key, value) in FETCH_DEFAULTS {
            if !self.options.0.contains_key(*key) {
                config.set(*key, *value);
            }
        }
        config
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<Ctx> = config
            .create_with_context(Ctx {
                shared: shared.clone(),
            })
            .map_err(|e| {
                EngineError::config(
                    format!(
                        "source `{}`: cannot create the Kafka consumer: {e}",
                        cx.name
                    ),
                    "check `options` against librdkafka's CONFIGURATION.md",
                )
            })?;
        // Fail early, with the broker named, when nothing answers.
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(30))
            .map_err(|e| {
                EngineError::external(
                    format!("source `{}`: reaching Kafka at {}", cx.name, self.brokers),
                    e,
                )
            })?;
        // Named topics that do not exist: a bounded run would wait for them forever; an
        // unbounded one waits, and says so.
        let missing: Vec<&str> = self
            .subscription
            .iter()
            .filter(|t| !t.starts_with('^'))
            .filter(|t| {
                !metadata
                    .topics()
                    .iter()
                    .any(|m| m.name() == t.as_str() && m.error().is_none())
            })
            .map(|t| t.as_str())
            .collect();
        if !missing.is_empty() {
            if cx.until_caught_up {
                return Err(EngineError::config(
                    format!(
                        "source `{}`: topic(s) {} do not exist at {}",
                        cx.name,
                        missing.join(", "),
                        self.brokers
                    ),
                    "check the names (`sluice replay --topic` creates a topic); \
                     --until-caught-up needs topics to read",
                ));
            }
            tracing::warn!(source = %cx.name, topics = ?missing, "the topics do not exist yet: waiting for them");
        }
        let topics: Vec<&str> = self.subscription.iter().map(|s| s.as_str()).collect();
        consumer.subscribe(&topics).map_err(|e| {
            EngineError::external(
                format!("source `{}`: subscribing to {topics:?}", cx.name),
                e,
            )
        })?;
        self.generation = cx.coordinator.rewind.current();
        self.until_caught_up = cx.until_caught_up;
        self.consumer = Some(consumer);
        self.shared = Some(shared);
        Ok(())
    }

    fn next_batch(&mut self, max_lines: usize) -> Result<Option<Batch>> {
        let idle_until = Instant::now() + Duration::from_millis(250);
        // Whether the last poll found the consumer's queue empty: the moment to look at
        // the ends (asking librdkafka for positions is a round trip to its own threads, too
        // dear to do per message).
        let mut drained = false;
        loop {
            {
                let (_, shared) = self.parts()?;
                if let Some(e) = shared.state().error.take() {
                    return Err(e);
                }
            }
            self.rewind_if_asked()?;
            if let Some(b) = self.take_ready(max_lines, false)? {
                return Ok(Some(b));
            }
            self.commit_offsets(false);
            if drained && self.until_caught_up && self.caught_up()? {
                tracing::info!("caught up: every assigned partition is read and committed");
                self.commit_offsets(true);
                return Ok(None);
            }
            if Instant::now() >= idle_until {
                // Nothing for a while: hand control back so the run can notice a stop.
                if let Some(b) = self.take_ready(max_lines, true)? {
                    return Ok(Some(b));
                }
                return Ok(Some(Batch {
                    generation: self.generation,
                    ..Default::default()
                }));
            }
            drained = self.read_messages(max_lines)?;
        }
    }

    fn close(&mut self) {
        self.commit_offsets(true);
        if let Some(s) = &self.shared {
            s.closing.store(true, Ordering::SeqCst);
        }
        if let Some(c) = self.consumer.take() {
            c.unsubscribe();
            drop(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse_from_names_times_and_milliseconds() {
        assert_eq!(parse_start("earliest"), Ok(Start::Earliest));
        assert_eq!(parse_start(" latest "), Ok(Start::Latest));
        assert_eq!(
            parse_start("2025-01-31T00:00:00Z"),
            Ok(Start::Time(1_738_281_600_000))
        );
        assert_eq!(
            parse_start("2025-01-31T01:00:00+01:00"),
            Ok(Start::Time(1_738_281_600_000))
        );
        assert_eq!(
            parse_start("1738281600000"),
            Ok(Start::Time(1_738_281_600_000))
        );
        assert!(parse_start("yesterday").is_err());
    }
}
