//! Running a topology: threads, bounded channels, operator chaining, ordered parallelism.
//!
//! - Each source reads on its own thread and sends batches of raw lines.
//! - Operators are fused into tasks: a chain of single-input, single-consumer operators runs
//!   in one task with no channel between them. A task whose operators can all be forked (they
//!   depend on the batch alone) runs on every worker thread and puts the batches back in input
//!   order before sending them on, so "first seen" stays input order (SPEC §12 D15). Other
//!   tasks run on one thread.
//! - Every channel is bounded: a slow sink slows the sources, and memory stays bounded by
//!   (channels × capacity × batch size).
//! - A sink runs on its own thread and is polled even when no data comes, so rolls on age fire.
//! - The end of input is the closing of channels: when a component's inputs are all closed, it
//!   finishes and closes its outputs. A failure anywhere stops the sources; sinks then do not
//!   commit what they hold, and the error is returned.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::batch::Batch;
use crate::component::{Operator, SchemaRegistry, Sink, SinkContext, Source, SourceContext};
use crate::error::{EngineError, Result};
use crate::ownership::{Coordinator, Ownership, Rewind};
use crate::registry::{BuildContext, Registry, Role};
use crate::stats::RunStats;
use crate::topology::Topology;

/// Numbers the partitions of a run: (source, partition key) <-> a small integer that events
/// carry in their [`crate::Position`].
#[derive(Debug, Default)]
pub struct Partitions {
    inner: RwLock<PartitionsInner>,
}

#[derive(Debug, Default)]
struct PartitionsInner {
    names: Vec<(String, String)>,
    ids: HashMap<(String, String), u32>,
}

impl Partitions {
    pub fn intern(&self, source: &str, key: &str) -> u32 {
        if let Ok(r) = self.inner.read() {
            if let Some(id) = r.ids.get(&(source.to_string(), key.to_string())) {
                return *id;
            }
        }
        let mut w = match self.inner.write() {
            Ok(w) => w,
            Err(p) => p.into_inner(),
        };
        let k = (source.to_string(), key.to_string());
        if let Some(id) = w.ids.get(&k) {
            return *id;
        }
        let id = w.names.len() as u32;
        w.names.push(k.clone());
        w.ids.insert(k, id);
        id
    }
    /// (source, partition key) of a partition number.
    pub fn get(&self, id: u32) -> Option<(String, String)> {
        self.inner
            .read()
            .ok()
            .and_then(|r| r.names.get(id as usize).cloned())
    }
}

/// Shared state of a run: the stop flag (signals, failures) and the first failure.
#[derive(Default)]
pub struct RunControl {
    pub stop: Arc<AtomicBool>,
    fatal: Mutex<Option<EngineError>>,
    /// Unbounded sources stop once caught up with the end they saw at start.
    pub until_caught_up: bool,
}

impl RunControl {
    pub fn new(stop: Arc<AtomicBool>) -> Self {
        RunControl {
            stop,
            fatal: Mutex::new(None),
            until_caught_up: false,
        }
    }
    pub fn until_caught_up(mut self, yes: bool) -> Self {
        self.until_caught_up = yes;
        self
    }
    fn fail(&self, e: EngineError) {
        tracing::error!(error = %e, "stopping the run");
        if let Ok(mut f) = self.fatal.lock() {
            if f.is_none() {
                *f = Some(e);
            }
        }
        self.stop.store(true, Ordering::SeqCst);
    }
    fn failed(&self) -> bool {
        self.fatal.lock().map(|f| f.is_some()).unwrap_or(true)
    }
    fn take(&self) -> Option<EngineError> {
        self.fatal.lock().ok().and_then(|mut f| f.take())
    }
}

struct Stage {
    names: Vec<String>,
    ops: Vec<Box<dyn Operator>>,
}

impl Stage {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        for (name, op) in self.names.iter().zip(self.ops.iter_mut()) {
            let before = batch.events.len() + batch.raw.lines.len();
            op.process(batch)?;
            metrics::counter!("sluice_operator_events_in_total", "operator" => name.clone())
                .increment(before as u64);
            metrics::counter!("sluice_operator_events_out_total", "operator" => name.clone())
                .increment(batch.events.len() as u64);
        }
        Ok(())
    }
    fn fork(&self) -> Option<Stage> {
        let ops = self
            .ops
            .iter()
            .map(|o| o.fork())
            .collect::<Option<Vec<_>>>()?;
        Some(Stage {
            names: self.names.clone(),
            ops,
        })
    }
}

fn send_all(outputs: &[Sender<Batch>], batch: Batch) -> bool {
    let n = outputs.len();
    let mut batch = Some(batch);
    for (i, out) in outputs.iter().enumerate() {
        let b = if i + 1 == n {
            batch.take()
        } else {
            batch.clone()
        };
        if let Some(b) = b {
            if out.send(b).is_err() {
                return false;
            }
        }
    }
    true
}

/// Builds and runs `topology` until its bounded sources end or `control.stop` is set.
///
/// # Errors
/// The first failure of any component; what was committed before it stays committed.
pub fn run(
    topology: &Topology,
    registry: &Registry,
    control: Arc<RunControl>,
    stats: Arc<RunStats>,
) -> Result<()> {
    let partitions = Arc::new(Partitions::default());
    let rewind = Arc::new(Rewind::default());
    let cap = topology.runtime.channel_capacity.max(1);
    let workers = match topology.runtime.workers {
        0 => default_workers(thread::available_parallelism().map_or(2, |n| n.get())),
        n => n,
    };

    // Schema registries of the datasets sinks own.
    let mut schema_registries: HashMap<String, Arc<dyn SchemaRegistry>> = HashMap::new();
    for n in topology.nodes.iter().filter(|n| n.role == Role::Sink) {
        if let Some(r) = n.component.open_schema_registry() {
            schema_registries.insert(n.name.clone(), r.map_err(|e| placed(e, n))?);
        }
    }
    let cx_for = |name: &str, schema_registry: Option<Arc<dyn SchemaRegistry>>| BuildContext {
        name: name.to_string(),
        schema_registry,
        partitions: partitions.clone(),
        stats: stats.clone(),
    };

    // Sinks first: they recover interrupted commits and know where sources must start.
    let mut sinks: BTreeMap<String, Box<dyn Sink>> = BTreeMap::new();
    for n in topology.nodes.iter().filter(|n| n.role == Role::Sink) {
        let mut sink = n
            .component
            .build_sink(&cx_for(&n.name, None))
            .map_err(|e| placed(e, n))?;
        sink.open(&SinkContext {
            name: n.name.clone(),
            partitions: partitions.clone(),
            stats: stats.clone(),
            rewind: rewind.clone(),
        })?;
        sinks.insert(n.name.clone(), sink);
    }

    let mut operators: HashMap<String, Box<dyn Operator>> = HashMap::new();
    for n in topology.nodes.iter().filter(|n| n.role == Role::Operator) {
        let reg = if n.component.needs_schema_registry() {
            let sink = topology
                .downstream_sinks(&n.name)
                .into_iter()
                .find(|s| schema_registries.contains_key(&s.name))
                .ok_or_else(|| {
                    EngineError::config(
                        format!("`{}` feeds no sink with a catalog", n.name),
                        "connect it to a lake sink",
                    )
                })?;
            schema_registries.get(&sink.name).cloned()
        } else {
            None
        };
        operators.insert(
            n.name.clone(),
            n.component.build_operator(&cx_for(&n.name, reg))?,
        );
    }

    struct OpenSource {
        name: String,
        source: Box<dyn Source>,
        decoder: Box<dyn Operator>,
    }
    let mut sources: Vec<OpenSource> = Vec::new();
    for n in topology.nodes.iter().filter(|n| n.role == Role::Source) {
        let mut source = n.component.build_source(&cx_for(&n.name, None))?;
        let (format, settings) = n
            .component
            .format()
            .unwrap_or(("mixpanel", Default::default()));
        let decoder = registry.decoder(format).ok_or_else(|| {
            EngineError::config(
                format!("source `{}`: unknown format `{format}`", n.name),
                format!("use one of: {}", registry.formats().join(", ")),
            )
        })?;
        let owners: Vec<Arc<dyn Ownership>> = topology
            .downstream_sinks(&n.name)
            .iter()
            .filter_map(|s| sinks.get(&s.name).map(|k| k.ownership()))
            .collect();
        source.open(&SourceContext {
            name: n.name.clone(),
            partitions: partitions.clone(),
            coordinator: Arc::new(Coordinator::new(&n.name, owners, rewind.clone())),
            stats: stats.clone(),
            until_caught_up: control.until_caught_up,
        })?;
        sources.push(OpenSource {
            name: n.name.clone(),
            source,
            decoder: decoder(&settings),
        });
    }

    // Plan tasks: fuse chains of single-input operators with a single consumer.
    struct TaskPlan {
        head: String,
        members: Vec<String>,
        stage: Stage,
        parallel: bool,
        input: Option<Receiver<Batch>>,
        outputs: Vec<String>,
    }
    let consumers = |name: &str| -> Vec<String> {
        topology
            .consumers(name)
            .into_iter()
            .map(|n| n.name.clone())
            .collect()
    };
    let mut plans: Vec<TaskPlan> = Vec::new();
    let mut placed: Vec<String> = Vec::new();
    let extend = |plan: &mut TaskPlan,
                  operators: &mut HashMap<String, Box<dyn Operator>>,
                  placed: &mut Vec<String>| {
        loop {
            let tail = plan
                .members
                .last()
                .cloned()
                .unwrap_or_else(|| plan.head.clone());
            let next = consumers(&tail);
            if next.len() != 1 {
                plan.outputs = next;
                return;
            }
            let c = &next[0];
            let Some(node) = topology.node(c) else { return };
            let fusible = node.role == Role::Operator
                && node.inputs.len() == 1
                && !placed.contains(c)
                && operators
                    .get(c)
                    .map(|o| !plan.parallel || o.fork().is_some())
                    .unwrap_or(false);
            if !fusible {
                plan.outputs = next;
                return;
            }
            if let Some(op) = operators.remove(c) {
                plan.stage.names.push(c.clone());
                plan.stage.ops.push(op);
                plan.members.push(c.clone());
                placed.push(c.clone());
            }
        }
    };
    // Every task head and every sink has one bounded input channel.
    let mut senders: HashMap<String, Sender<Batch>> = HashMap::new();
    let mut sink_inputs: HashMap<String, Receiver<Batch>> = HashMap::new();
    let mut source_threads = Vec::new();
    for OpenSource {
        name,
        source,
        decoder,
    } in sources
    {
        let (tx, rx) = bounded::<Batch>(cap);
        let mut plan = TaskPlan {
            head: name.clone(),
            members: Vec::new(),
            stage: Stage {
                names: vec![format!("{name}.decode")],
                ops: vec![decoder],
            },
            // With one worker no task runs on several threads: this one takes the operators
            // that cannot fork too, and may then run on its sink's thread (below).
            parallel: workers > 1,
            input: Some(rx),
            outputs: Vec::new(),
        };
        extend(&mut plan, &mut operators, &mut placed);
        plans.push(plan);
        source_threads.push((name, source, tx));
    }
    let op_names: Vec<String> = topology
        .nodes
        .iter()
        .filter(|n| n.role == Role::Operator)
        .map(|n| n.name.clone())
        .collect();
    for name in op_names {
        if placed.contains(&name) {
            continue;
        }
        let Some(op) = operators.remove(&name) else {
            continue;
        };
        placed.push(name.clone());
        let parallel = workers > 1 && op.fork().is_some();
        let mut plan = TaskPlan {
            head: name.clone(),
            members: vec![name.clone()],
            stage: Stage {
                names: vec![name.clone()],
                ops: vec![op],
            },
            parallel,
            input: None,
            outputs: Vec::new(),
        };
        extend(&mut plan, &mut operators, &mut placed);
        let (tx, rx) = bounded::<Batch>(cap);
        plan.input = Some(rx);
        senders.insert(name, tx);
        plans.push(plan);
    }
    // A one-thread task whose only consumer is a sink with no other input runs on the sink's
    // thread, before each write: its events are written while the task's work on them is
    // still in the core's cache, rather than crossing to another core and back (W1's
    // type-infer and partition-by-date, once a thread of their own).
    let mut sink_stages: HashMap<String, Stage> = HashMap::new();
    // A lone source that never waits, whose whole chain runs on its sink's thread, is read
    // there too: its lines are decoded by the core that read them, from its cache, instead of
    // crossing from another core (W1: 0.91-0.93 times the CPU, 9-11 pairs).
    let mut inline_sources: HashMap<String, Box<dyn Source>> = HashMap::new();
    for name in sinks.keys() {
        let single_input = topology.node(name).is_some_and(|n| n.inputs.len() == 1);
        let fusible = plans
            .iter()
            .position(|p| !p.parallel && p.input.is_some() && p.outputs == [name.as_str()])
            .filter(|_| single_input);
        if let Some(i) = fusible {
            let plan = plans.remove(i);
            if let [(source, s, _)] = source_threads.as_slice() {
                if *source == plan.head && s.never_waits() {
                    if let Some((_, s, _)) = source_threads.pop() {
                        inline_sources.insert(name.clone(), s);
                    }
                }
            }
            if let Some(rx) = plan.input {
                sink_inputs.insert(name.clone(), rx);
                sink_stages.insert(name.clone(), plan.stage);
                continue;
            }
        }
        let (tx, rx) = bounded::<Batch>(cap);
        senders.insert(name.clone(), tx);
        sink_inputs.insert(name.clone(), rx);
    }
    let outputs_of = |outs: &[String]| -> Result<Vec<Sender<Batch>>> {
        outs.iter()
            .map(|o| {
                senders
                    .get(o)
                    .cloned()
                    .ok_or_else(|| EngineError::Internal(format!("no channel for `{o}`")))
            })
            .collect()
    };

    let mut handles = Vec::new();
    let batch_size = topology.runtime.batch_size.max(1);
    for (name, mut source, tx) in source_threads {
        let control = control.clone();
        handles.push(spawn(&format!("src-{name}"), move || {
            while !control.stop.load(Ordering::SeqCst) {
                match source.next_batch(batch_size) {
                    // Idle: the source handed control back so that a stop is noticed.
                    Ok(Some(b)) if b.is_empty() && b.progress.is_empty() => {}
                    Ok(Some(b)) => {
                        if tx.send(b).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        control.fail(e);
                        break;
                    }
                }
            }
            drop(tx);
            source.close();
        })?);
    }
    for plan in plans {
        let outputs = outputs_of(&plan.outputs)?;
        let Some(input) = plan.input else { continue };
        let control = control.clone();
        let label = plan.head.clone();
        if plan.parallel {
            spawn_parallel(
                &label,
                plan.stage,
                workers,
                cap,
                input,
                outputs,
                control,
                &mut handles,
            )?;
        } else {
            let mut stage = plan.stage;
            handles.push(spawn(&format!("op-{label}"), move || {
                for mut batch in input.iter() {
                    if let Err(e) = stage.process(&mut batch) {
                        control.fail(e);
                        return;
                    }
                    if !send_all(&outputs, batch) {
                        return;
                    }
                }
            })?);
        }
    }
    drop(senders);
    let high_water = crate::units::parse_bytes(&topology.runtime.memory_budget).map_err(|m| {
        EngineError::config(format!("runtime.memory_budget: {m}"), "write e.g. 1GiB")
    })? / 4
        * 3;
    for (name, mut sink) in sinks {
        let Some(input) = sink_inputs.remove(&name) else {
            continue;
        };
        let mut stage = sink_stages.remove(&name);
        let mut source = inline_sources.remove(&name);
        let control = control.clone();
        handles.push(spawn(&format!("sink-{name}"), move || {
            let every = sink.poll_interval();
            let mut next_poll = Instant::now() + every;
            let mut next_memory_check = Instant::now();
            loop {
                let now = Instant::now();
                let next = match source.as_mut() {
                    Some(source) => {
                        if control.stop.load(Ordering::SeqCst) {
                            break;
                        }
                        match source.next_batch(batch_size) {
                            Ok(Some(b)) if b.is_empty() && b.progress.is_empty() => None,
                            Ok(Some(b)) => Some(b),
                            Ok(None) => break,
                            Err(e) => {
                                control.fail(e);
                                break;
                            }
                        }
                    }
                    None => match input.recv_timeout(next_poll.saturating_duration_since(now)) {
                        Ok(b) => Some(b),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                };
                if let Some(mut batch) = next {
                    if let Some(stage) = stage.as_mut() {
                        if let Err(e) = stage.process(&mut batch) {
                            control.fail(e);
                            break;
                        }
                    }
                    if let Err(e) = sink.write(batch) {
                        control.fail(e);
                        break;
                    }
                }
                let now = Instant::now();
                if now >= next_memory_check {
                    next_memory_check = now + MEMORY_CHECK_EVERY;
                    if resident_bytes().is_some_and(|rss| rss >= high_water) {
                        tracing::debug!(sink = %name, "near the memory budget: committing early");
                        metrics::counter!("sluice_memory_flushes_total", "sink" => name.clone())
                            .increment(1);
                        if let Err(e) = sink.relieve_memory() {
                            control.fail(e);
                            break;
                        }
                        if let Some(release) = RELEASE_MEMORY.get() {
                            release();
                        }
                    }
                }
                if now >= next_poll {
                    next_poll = now + every;
                    if let Err(e) = sink.poll(now) {
                        control.fail(e);
                        break;
                    }
                }
            }
            if let Some(source) = source.as_mut() {
                source.close();
            }
            if control.failed() {
                tracing::warn!(sink = %name, "not committing after a failure upstream");
                return;
            }
            if let Err(e) = sink.finish() {
                control.fail(e);
            }
        })?);
    }
    for h in handles {
        if h.join().is_err() {
            control.fail(EngineError::Internal("a worker thread panicked".into()));
        }
    }
    match control.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The decoders run by default on `cores`: one per core but the one the sink's thread takes,
/// and at least one. With one, a source's whole chain runs on its sink's thread. On two cores
/// that is the cheaper choice by far: decoding on one core and appending on the other cost
/// W1 1.11 times the CPU time per event for 0.81 times the wall time, and a decoder thread
/// of its own beside the sink's 1.17 times for 0.96 (each batch crosses between the cores'
/// caches). More throughput there comes from a second process in the consumer group.
fn default_workers(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| EngineError::external("starting a thread", e))
}

#[allow(clippy::too_many_arguments)]
fn spawn_parallel(
    label: &str,
    stage: Stage,
    workers: usize,
    cap: usize,
    input: Receiver<Batch>,
    outputs: Vec<Sender<Batch>>,
    control: Arc<RunControl>,
    handles: &mut Vec<thread::JoinHandle<()>>,
) -> Result<()> {
    let (work_tx, work_rx) = bounded::<(u64, Batch)>(cap);
    let (done_tx, done_rx) = bounded::<(u64, Batch)>(cap + workers);
    handles.push(spawn(&format!("disp-{label}"), move || {
        for (seq, batch) in input.iter().enumerate() {
            if work_tx.send((seq as u64, batch)).is_err() {
                return;
            }
        }
    })?);
    let mut stages = vec![stage];
    while stages.len() < workers {
        match stages[0].fork() {
            Some(s) => stages.push(s),
            None => break,
        }
    }
    for (i, mut stage) in stages.into_iter().enumerate() {
        let work_rx = work_rx.clone();
        let done_tx = done_tx.clone();
        let control = control.clone();
        handles.push(spawn(&format!("work-{label}-{i}"), move || {
            for (seq, mut batch) in work_rx.iter() {
                if let Err(e) = stage.process(&mut batch) {
                    control.fail(e);
                    return;
                }
                if done_tx.send((seq, batch)).is_err() {
                    return;
                }
            }
        })?);
    }
    drop(done_tx);
    handles.push(spawn(&format!("order-{label}"), move || {
        let mut next = 0u64;
        let mut pending: BTreeMap<u64, Batch> = BTreeMap::new();
        for (seq, batch) in done_rx.iter() {
            pending.insert(seq, batch);
            while let Some(b) = pending.remove(&next) {
                next += 1;
                if !send_all(&outputs, b) {
                    return;
                }
            }
        }
    })?);
    Ok(())
}

/// A configuration error found while opening a component (a bucket that cannot be reached, a
/// role that cannot be assumed) points at that component in the topology.
fn placed(e: EngineError, n: &crate::topology::NodeSpec) -> EngineError {
    match e {
        EngineError::Config(mut problems) => {
            for p in &mut problems {
                if p.location.file.is_empty() {
                    p.location = n.location.clone();
                }
                if p.component.is_empty() {
                    p.component = n.name.clone();
                }
            }
            EngineError::Config(problems)
        }
        other => other,
    }
}

/// How often a sink thread looks at the process's resident memory.
const MEMORY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// What gives freed memory back to the OS at once, after a sink relieved memory: the
/// allocator may keep freed pages for a while (which saves faulting them in again), and the
/// budget reads the resident set. Set once by the binary.
static RELEASE_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Installs the allocator's "return freed memory now" (see [`RELEASE_MEMORY`]).
pub fn set_memory_release(release: fn()) {
    let _ = RELEASE_MEMORY.set(release);
}

/// The process's resident set, from `/proc/self/status` (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::default_workers;

    #[test]
    fn the_sink_thread_keeps_a_core_of_its_own() {
        assert_eq!(default_workers(1), 1);
        assert_eq!(default_workers(2), 1);
        assert_eq!(default_workers(4), 3);
        assert_eq!(default_workers(64), 63);
    }
}
