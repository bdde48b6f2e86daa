//! Producing to Kafka: topics, and `sluice replay`'s paced, acknowledged sending.
//!
//! The producer is idempotent (no duplicates from librdkafka's own retries). A message whose
//! delivery finally fails is sent again, up to `max_attempts` times in all, and counted; a
//! replay reports success only for messages the broker acknowledged.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use sluice_engine::{EngineError, Result};

use super::ClientOptions;

/// Makes sure `topic` exists; creates it with `partitions` (default 8) if not. Returns its
/// partition count and whether it was created.
pub fn ensure_topic(
    brokers: &str,
    options: &ClientOptions,
    topic: &str,
    partitions: Option<i32>,
) -> Result<(usize, bool)> {
    let producer: BaseProducer = options
        .client_config(brokers)
        .create()
        .map_err(|e| EngineError::external("creating a Kafka client", e))?;
    let existing = topic_partitions(&producer, brokers, topic)?;
    if let Some(n) = existing {
        if let Some(want) = partitions {
            if want as usize != n {
                tracing::warn!(
                    topic,
                    existing = n,
                    asked = want,
                    "the topic exists; keeping its partition count"
                );
            }
        }
        return Ok((n, false));
    }
    let admin: AdminClient<DefaultClientContext> = options
        .client_config(brokers)
        .create()
        .map_err(|e| EngineError::external("creating a Kafka admin client", e))?;
    let n = partitions.unwrap_or(8);
    let new = NewTopic::new(topic, n, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics([&new], &opts))
        .map_err(|e| EngineError::external(format!("creating topic {topic}"), e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(EngineError::external(
                    format!("creating topic {t}"),
                    KafkaError::AdminOp(code),
                ))
            }
        }
    }
    // Metadata catches up with the creation shortly after.
    for _ in 0..100 {
        if let Some(n) = topic_partitions(&producer, brokers, topic)? {
            return Ok((n, true));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(EngineError::Internal(format!(
        "topic {topic} was created but does not show in the metadata"
    )))
}

fn topic_partitions(producer: &BaseProducer, brokers: &str, topic: &str) -> Result<Option<usize>> {
    let md = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| EngineError::external(format!("reaching Kafka at {brokers}"), e))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

/// Counters of a replay, shared with the delivery callback.
#[derive(Debug, Default)]
pub struct Delivery {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Delivery {
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

struct Retry {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    attempt: u32,
}

struct Ctx {
    delivery: Arc<Delivery>,
    retries: Mutex<Vec<Retry>>,
    max_attempts: u32,
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<u32>;
    fn delivery(&self, result: &DeliveryResult<'_>, attempt: Box<u32>) {
        match result {
            Ok(m) => {
                self.delivery.acked.fetch_add(1, Ordering::Relaxed);
                self.delivery
                    .acked_bytes
                    .fetch_add(m.payload_len() as u64, Ordering::Relaxed);
            }
            Err((e, m)) => {
                if let Ok(mut last) = self.delivery.last_error.lock() {
                    *last = Some(e.to_string());
                }
                if *attempt < self.max_attempts {
                    self.delivery.retried.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut q) = self.retries.lock() {
                        q.push(Retry {
                            key: m.key().map(|k| k.to_vec()),
                            payload: m.payload().unwrap_or_default().to_vec(),
                            attempt: *attempt + 1,
                        });
                    }
                } else {
                    self.delivery.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// An idempotent producer to one topic that retries failed deliveries.
pub struct TopicProducer {
    producer: BaseProducer<Ctx>,
    topic: String,
    pub delivery: Arc<Delivery>,
}

impl TopicProducer {
    pub fn new(brokers: &str, options: &ClientOptions, topic: &str) -> Result<Self> {
        let delivery = Arc::new(Delivery::default());
        let mut config = options.client_config(brokers);
        config.set("enable.idempotence", "true");
        for (k, v) in [
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
            ("queue.buffering.max.messages", "200000"),
            ("message.timeout.ms", "60000"),
        ] {
            if !options.0.contains_key(k) {
                config.set(k, v);
            }
        }
        let producer = config
            .create_with_context(Ctx {
                delivery: delivery.clone(),
                retries: Mutex::new(Vec::new()),
                max_attempts: 3,
            })
            .map_err(|e| EngineError::external("creating the Kafka producer", e))?;
        Ok(TopicProducer {
            producer,
            topic: topic.to_string(),
            delivery,
        })
    }

    /// Queues one message, waiting while librdkafka's queue is full.
    pub fn send(&self, key: Option<&[u8]>, payload: &[u8]) -> Result<()> {
        self.send_attempt(key, payload, 1)
    }

    fn send_attempt(&self, key: Option<&[u8]>, payload: &[u8], attempt: u32) -> Result<()> {
        loop {
            let mut record: BaseRecord<'_, [u8], [u8], Box<u32>> =
                BaseRecord::with_opaque_to(&self.topic, Box::new(attempt)).payload(payload);
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.producer.send(record) {
                Ok(()) => {
                    if attempt == 1 {
                        self.delivery.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    // This message cannot be produced (too large, say): it counts as failed,
                    // and the run goes on to report it.
                    if attempt == 1 {
                        self.delivery.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    self.delivery.failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = self.delivery.last_error.lock() {
                        *last = Some(format!("producing to {}: {e}", self.topic));
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Serves delivery reports and re-sends failed messages.
    pub fn poll(&self) -> Result<()> {
        self.producer.poll(Duration::ZERO);
        let again: Vec<Retry> = match self.producer.context().retries.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => Vec::new(),
        };
        for r in again {
            self.send_attempt(r.key.as_deref(), &r.payload, r.attempt)?;
        }
        Ok(())
    }

    /// Waits until every message is acknowledged or finally failed, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll()?;
            let pending = self.producer.in_flight_count() > 0
                || self
                    .producer
                    .context()
                    .retries
                    .lock()
                    .map(|q| !q.is_empty())
                    .unwrap_or(false);
            if !pending {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Data(format!(
                    "{} message(s) still unacknowledged after {:?}",
                    self.producer.in_flight_count(),
                    timeout
                )));
            }
            let _ = self.producer.flush(Duration::from_millis(100));
        }
    }
}

/// How `replay` paces sending.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// As fast as the broker takes them.
    Full,
    /// Events per second.
    Rate(f64),
    /// N times the recorded pace of the events' `properties.time`.
    Speed(f64),
}

/// A forward jump in event time beyond this (seconds) is not waited for by `--speed`: the
/// clock starts again from the event after it.
pub const SPEED_MAX_GAP: f64 = 3600.0;

/// `--speed`'s clock: when each event is due, in seconds from the pass's start, so that the
/// events go at N times the pace of their `time`s.
///
/// Recorded streams are not in time order: late events (times before what came already) go at
/// once and do not move the clock back, and the clock follows the latest time seen. A jump
/// forward of more than [`SPEED_MAX_GAP`] of event time (a first event that was late by days,
/// a night without traffic) is not waited out: the clock starts again from that event.
#[derive(Debug)]
pub struct SpeedClock {
    speed: f64,
    /// (event time, due) the clock counts from.
    anchor: Option<(f64, f64)>,
    /// The latest event time seen.
    high: f64,
}

impl SpeedClock {
    pub fn new(speed: f64) -> Self {
        SpeedClock {
            speed,
            anchor: None,
            high: f64::MIN,
        }
    }

    /// When the event of time `t` is due, given that it is `now` (both in seconds from the
    /// pass's start).
    pub fn due(&mut self, t: f64, now: f64) -> f64 {
        let Some((t0, d0)) = self.anchor else {
            self.anchor = Some((t, now));
            self.high = t;
            return now;
        };
        if t > self.high + SPEED_MAX_GAP {
            let d = d0 + (self.high - t0) / self.speed;
            self.anchor = Some((t, d.max(now)));
            self.high = t;
            return d.max(now);
        }
        self.high = self.high.max(t);
        d0 + (t - t0).max(0.0) / self.speed
    }
}

/// What to replay and how.
pub struct ReplayPlan {
    pub files: Vec<PathBuf>,
    pub pace: Pace,
    /// Start again at the first file after the last, until `max_events` or a stop.
    pub repeat: bool,
    pub max_events: Option<u64>,
    /// Key messages by `properties.distinct_id` (else no key: spread by librdkafka).
    pub key_by_distinct_id: bool,
}

/// The final report of a replay.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplayReport {
    pub events: u64,
    pub acked: u64,
    pub failed: u64,
    pub retried: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub mb_per_second: f64,
    pub last_error: Option<String>,
}

/// A line's `properties.distinct_id` as key bytes, if there is one.
fn distinct_id(line: &[u8]) -> Option<Vec<u8>> {
    let v = sonic_rs::get_from_slice(line, &["properties", "distinct_id"]).ok()?;
    let s = v.as_raw_str();
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    if s.is_empty() || s == "null" {
        None
    } else {
        Some(s.as_bytes().to_vec())
    }
}

/// A line's `properties.time` in seconds, if there is one.
fn event_time(line: &[u8]) -> Option<f64> {
    let v = sonic_rs::get_from_slice(line, &["properties", "time"]).ok()?;
    let t: f64 = v.as_raw_str().trim_matches('"').parse().ok()?;
    Some(if t > 1e11 { t / 1000.0 } else { t })
}

fn open_lines(path: &PathBuf) -> Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::io::stdin(),
        )));
    }
    let f = std::fs::File::open(path)
        .map_err(|e| EngineError::external(format!("opening {}", path.display()), e))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(f),
        ))
    } else {
        Box::new(std::io::BufReader::with_capacity(1 << 20, f))
    })
}

/// Sends the plan's lines through `producer`, calling `progress` about every 100 ms.
/// Stops early when `stop` returns true. Waits for every acknowledgement before reporting.
pub fn replay(
    producer: &TopicProducer,
    plan: &ReplayPlan,
    stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(&Delivery),
) -> Result<ReplayReport> {
    let started = Instant::now();
    let mut n: u64 = 0;
    let mut last_progress = Instant::now();
    let mut line = Vec::with_capacity(4096);
    'outer: loop {
        // `--speed` paces each pass from its own start and its own first event's time.
        let mut clock = match plan.pace {
            Pace::Speed(s) => Some(SpeedClock::new(s)),
            _ => None,
        };
        let sent_before = n;
        for path in &plan.files {
            let mut r = open_lines(path)?;
            loop {
                if plan.max_events.is_some_and(|m| n >= m) || stop() {
                    break 'outer;
                }
                line.clear();
                let read = r
                    .read_until(b'\n', &mut line)
                    .map_err(|e| EngineError::external(format!("reading {}", path.display()), e))?;
                if read == 0 {
                    break;
                }
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                if line.is_empty() {
                    continue;
                }
                // Pacing: wait until this event's moment.
                let due = match plan.pace {
                    Pace::Full => None,
                    Pace::Rate(r) => Some(n as f64 / r),
                    Pace::Speed(_) => match (&mut clock, event_time(&line)) {
                        (Some(c), Some(t)) => Some(c.due(t, started.elapsed().as_secs_f64())),
                        _ => None,
                    },
                };
                if let Some(due) = due {
                    loop {
                        let ahead = due - started.elapsed().as_secs_f64();
                        if ahead <= 0.0 {
                            break;
                        }
                        producer.poll()?;
                        std::thread::sleep(Duration::from_secs_f64(ahead.min(0.005)));
                    }
                }
                let key = if plan.key_by_distinct_id {
                    distinct_id(&line)
                } else {
                    None
                };
                producer.send(key.as_deref(), &line)?;
                n += 1;
                if n.is_multiple_of(256) {
                    producer.poll()?;
                }
                if last_progress.elapsed() >= Duration::from_millis(100) {
                    last_progress = Instant::now();
                    progress(&producer.delivery);
                }
            }
        }
        if !plan.repeat {
            break;
        }
        if n == sent_before {
            return Err(EngineError::config(
                "--loop over files that hold no events",
                "give files with at least one line",
            ));
        }
    }
    let send_seconds = started.elapsed().as_secs_f64();
    let flushed = producer.flush(Duration::from_secs(120));
    progress(&producer.delivery);
    let d = &producer.delivery;
    let acked = d.acked.load(Ordering::Relaxed);
    let bytes = d.acked_bytes.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let report = ReplayReport {
        events: d.sent.load(Ordering::Relaxed),
        acked,
        failed: d.failed.load(Ordering::Relaxed),
        retried: d.retried.load(Ordering::Relaxed),
        bytes,
        seconds,
        // The sending pace, which is what --rate and --speed control.
        events_per_second: n as f64 / send_seconds.max(1e-9),
        mb_per_second: bytes as f64 / 1e6 / seconds,
        last_error: d
            .last_error()
            .or_else(|| flushed.err().map(|e| e.to_string())),
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer to `topic` of a one-broker mock cluster whose messages time out after
    /// `timeout_ms`.
    fn mock_producer(
        topic: &str,
        timeout_ms: u32,
    ) -> (
        rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        TopicProducer,
    ) {
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        mock.create_topic(topic, 1, 1).unwrap();
        let mut options = ClientOptions::default();
        options
            .0
            .insert("message.timeout.ms".into(), timeout_ms.to_string());
        // Back on the broker soon after it is up again.
        options
            .0
            .insert("reconnect.backoff.max.ms".into(), "100".into());
        let p = TopicProducer::new(&mock.bootstrap_servers(), &options, topic).unwrap();
        (mock, p)
    }

    /// Serves the producer until `done`, for at most 60 s.
    fn serve_until(p: &TopicProducer, done: impl Fn(&Delivery) -> bool) {
        let until = Instant::now() + Duration::from_secs(60);
        while !done(&p.delivery) {
            assert!(Instant::now() < until, "{:?}", p.delivery);
            p.poll().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn messages_whose_delivery_failed_are_sent_again_and_counted() {
        let (mock, p) = mock_producer("retried", 3000);
        // Delivered once, so the producer knows the topic; then the broker goes away.
        p.send(Some(b"k"), b"first").unwrap();
        p.flush(Duration::from_secs(30)).unwrap();
        mock.broker_down(1).unwrap();
        for i in 0..20 {
            p.send(Some(b"k"), format!("m{i}").as_bytes()).unwrap();
        }
        // The first attempts time out and are sent again; the broker is back at once, before
        // the second ones time out.
        serve_until(&p, |d| d.retried.load(Ordering::Relaxed) >= 20);
        mock.broker_up(1).unwrap();
        p.flush(Duration::from_secs(30)).unwrap();
        let d = &p.delivery;
        assert_eq!(d.acked.load(Ordering::Relaxed), 21);
        assert_eq!(d.failed.load(Ordering::Relaxed), 0);
        assert_eq!(d.sent.load(Ordering::Relaxed), 21);
    }

    #[test]
    fn messages_never_delivered_count_as_failed_not_acknowledged() {
        let (mock, p) = mock_producer("lost", 1500);
        p.send(Some(b"k"), b"first").unwrap();
        p.flush(Duration::from_secs(30)).unwrap();
        mock.broker_down(1).unwrap();
        for i in 0..20 {
            p.send(Some(b"k"), format!("m{i}").as_bytes()).unwrap();
        }
        // Three attempts of 1.5 s each, then given up.
        p.flush(Duration::from_secs(30)).unwrap();
        let d = &p.delivery;
        assert_eq!(d.acked.load(Ordering::Relaxed), 1);
        assert_eq!(d.failed.load(Ordering::Relaxed), 20);
        assert_eq!(d.retried.load(Ordering::Relaxed), 40);
        assert!(d.last_error().is_some());
    }

    #[test]
    fn speed_follows_the_latest_time_and_skips_long_gaps() {
        let mut c = SpeedClock::new(10.0);
        // A first event late by three days: the next one is not waited for.
        assert_eq!(c.due(1_000.0, 0.0), 0.0);
        assert_eq!(c.due(1_000.0 + 3.0 * 86_400.0, 0.1), 0.1);
        let t = 1_000.0 + 3.0 * 86_400.0;
        // From there, ten times the recorded pace.
        assert!((c.due(t + 10.0, 0.2) - 1.1).abs() < 1e-9);
        assert!((c.due(t + 20.0, 0.3) - 2.1).abs() < 1e-9);
        // A late event goes at once (due before now) and does not hold the clock back.
        assert!(c.due(t - 500.0, 2.2) <= 2.2);
        assert!((c.due(t + 30.0, 2.3) - 3.1).abs() < 1e-9);
        // A night without events is skipped: due when the last event before it was due.
        assert!((c.due(t + 30.0 + 8.0 * 3600.0, 3.2) - 3.2).abs() < 1e-9);
        assert!((c.due(t + 40.0 + 8.0 * 3600.0, 3.3) - 4.2).abs() < 1e-9);
    }

    #[test]
    fn keys_and_times_come_from_properties() {
        let l = br#"{"event":"a","properties":{"time":1700000000123,"distinct_id":"u-1"}}"#;
        assert_eq!(distinct_id(l), Some(b"u-1".to_vec()));
        assert_eq!(event_time(l), Some(1_700_000_000.123));
        let n = br#"{"event":"a","properties":{"time":"1700000000","distinct_id":42}}"#;
        assert_eq!(distinct_id(n), Some(b"42".to_vec()));
        assert_eq!(event_time(n), Some(1_700_000_000.0));
        assert_eq!(distinct_id(b"not json"), None);
        assert_eq!(distinct_id(br#"{"properties":{"distinct_id":null}}"#), None);
    }
}
