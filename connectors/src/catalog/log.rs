//! The commit state as a log in the object store: workers on any machines share it through
//! the bucket alone.
//!
//! Under `<prefix>/<project_id>/_sluice/state/`:
//! - `log/<seq>.json`: one [`Op`] per object, numbered from 1 (20 digits), each written once
//!   with a conditional put (`If-None-Match: *`): of two workers writing the same number, one
//!   wins, and the other reads what won and decides again against it;
//! - `checkpoints/<seq>.json`: the whole [`State`] after `seq`, every
//!   [`CHECKPOINT_EVERY`] operations, and `latest.json` naming the newest, so that a worker
//!   starting up reads one checkpoint and the operations after it, not the whole history.
//!
//! Log objects are never deleted: a worker paused for a long time that came back to find its
//! next number free would otherwise write into history nobody reads again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use serde::{Deserialize, Serialize};

use sluice_engine::commit::CommitStage;
use sluice_engine::component::{
    ColumnAssignment, ColumnDef, ColumnRequest, ProposeTable, TableDef,
};
use sluice_engine::ownership::{worker_id, Claim};
use sluice_engine::{EngineError, Result, TypeClass};

use super::state::{Op, Refusal, State, Step};
use super::{
    Catalog, CatalogTable, Manifest, NewPartition, Partition, SourcePosition, TableStorage,
};
use crate::store::ObjectStore;

/// A checkpoint of the whole state is written after every this many operations.
pub const CHECKPOINT_EVERY: u64 = 64;

/// The format of log entries and checkpoints this build writes and reads.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Entry {
    v: u32,
    /// Who wrote it: the worker and a number of its own, so that a write whose answer was
    /// lost (and which the client sent again, to be refused) is recognised as ours.
    writer: String,
    at: String,
    op: Op,
}

#[derive(Serialize, Deserialize)]
struct Latest {
    v: u32,
    seq: u64,
}

#[derive(Deserialize)]
struct Checkpoint {
    v: u32,
    state: State,
}

/// [`Checkpoint`] as written: the state borrowed, not copied.
#[derive(Serialize)]
struct CheckpointOf<'a> {
    v: u32,
    state: &'a State,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn internal(what: &str, key: &str) -> impl FnOnce(serde_json::Error) -> EngineError {
    let (what, key) = (what.to_string(), key.to_string());
    move |e| EngineError::Internal(format!("commit state: {what} {key}: {e}"))
}

/// The commit state kept as a log of conditional writes in an object store.
pub struct LogCatalog {
    store: Arc<dyn ObjectStore>,
    /// The state's folder key, ending in `/`.
    root: String,
    state: Mutex<State>,
    writer: String,
    /// Whether the store was seen to refuse a second create of a key (checked before the
    /// first write, so that reading commands write nothing).
    probed: std::sync::atomic::AtomicBool,
}

/// Numbers this process's writes, across every catalog it opens: with the worker's id, it
/// names each write uniquely.
static WRITES: AtomicU64 = AtomicU64::new(0);

impl LogCatalog {
    /// Opens the state under `root` (a folder key ending in `/`). Before its first write, it
    /// checks that the store refuses a second create of one key: a store that ignored the
    /// condition would let two workers both commit.
    pub fn open(store: Arc<dyn ObjectStore>, root: &str) -> Result<Self> {
        let root = if root.ends_with('/') {
            root.to_string()
        } else {
            format!("{root}/")
        };
        let cat = LogCatalog {
            store,
            root,
            state: Mutex::new(State::default()),
            writer: worker_id().to_string(),
            probed: std::sync::atomic::AtomicBool::new(false),
        };
        let mut s = cat.lock()?;
        *s = cat.load_checkpoint()?;
        cat.catch_up(&mut s, None)?;
        drop(s);
        Ok(cat)
    }

    /// One catalog per state folder and process: the sink and `type-infer` share what they
    /// have read of the log.
    pub fn shared(store: Arc<dyn ObjectStore>, root: &str) -> Result<Arc<Self>> {
        static OPEN: OnceLock<Mutex<HashMap<String, Weak<LogCatalog>>>> = OnceLock::new();
        let key = store.url(root);
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .map_err(|_| EngineError::Internal("commit state registry poisoned".into()))?;
        if let Some(c) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(c);
        }
        open.retain(|_, c| c.strong_count() > 0);
        let c = Arc::new(LogCatalog::open(store, root)?);
        open.insert(key, Arc::downgrade(&c));
        Ok(c)
    }

    /// The store's URL of the state folder.
    pub fn url(&self) -> String {
        self.store.url(&self.root)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| EngineError::Internal("commit state lock poisoned".into()))
    }

    fn log_key(&self, seq: u64) -> String {
        format!("{}log/{seq:020}.json", self.root)
    }

    fn checkpoint_key(&self, seq: u64) -> String {
        format!("{}checkpoints/{seq:020}.json", self.root)
    }

    fn latest_key(&self) -> String {
        format!("{}latest.json", self.root)
    }

    fn check_conditional_writes(&self) -> Result<()> {
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let key = format!(
            "{}probes/{}-{n}",
            self.root,
            self.writer.replace([':', '/'], "_")
        );
        // The first may answer `false` too: a write whose answer was lost, then refused when
        // sent again. The second must be refused.
        again(|| self.store.create(&key, b"probe"))?;
        let second = again(|| self.store.create(&key, b"probe"))?;
        again(|| self.store.delete(&key))?;
        if !second {
            return Ok(());
        }
        Err(EngineError::config(
            format!(
                "{} does not refuse a second conditional write of one key (If-None-Match: *); \
                 the commit state needs that to keep two workers from both committing",
                self.store.url(&key)
            ),
            "use a store that honours conditional writes (AWS S3 does), or keep the state in \
             a file with `catalog.state: PATH` (workers must then share that file system)",
        ))
    }

    /// The newest checkpoint's state, or the empty one (the whole log is then read) when there
    /// is none or it cannot be used.
    fn load_checkpoint(&self) -> Result<State> {
        match self.read_checkpoint() {
            Ok(s) => Ok(s),
            Err(e @ EngineError::Config(_)) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "commit state: the checkpoint is unusable; reading the whole log");
                Ok(State::default())
            }
        }
    }

    fn read_checkpoint(&self) -> Result<State> {
        let key = self.latest_key();
        let Some(bytes) = again(|| self.store.get_if_exists(&key))? else {
            return Ok(State::default());
        };
        let latest: Latest = serde_json::from_slice(&bytes).map_err(internal("reading", &key))?;
        if latest.v > VERSION {
            return Err(newer(&self.store.url(&key)));
        }
        let key = self.checkpoint_key(latest.seq);
        let Some(bytes) = again(|| self.store.get_if_exists(&key))? else {
            // A pointer without its checkpoint: read the whole log instead.
            tracing::warn!(checkpoint = %self.store.url(&key), "missing; reading the state's whole log");
            return Ok(State::default());
        };
        let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(internal("reading", &key))?;
        if cp.v > VERSION {
            return Err(newer(&self.store.url(&key)));
        }
        if cp.state.seq != latest.seq {
            return Err(EngineError::Internal(format!(
                "{} holds the state at {}, not {}",
                self.store.url(&key),
                cp.state.seq,
                latest.seq
            )));
        }
        let mut state = cp.state;
        state.reindex();
        Ok(state)
    }

    /// Folds in every operation written after the state's. If the one at `mine.0` was written
    /// by `mine.1` (a write of ours that was refused only because it had already succeeded),
    /// how applying it went.
    fn catch_up(
        &self,
        s: &mut State,
        mine: Option<(u64, &str)>,
    ) -> Result<Option<std::result::Result<(), Refusal>>> {
        let mut ours = None;
        loop {
            let seq = s.seq + 1;
            let key = self.log_key(seq);
            let Some(bytes) = again(|| self.store.get_if_exists(&key))? else {
                return Ok(ours);
            };
            let e: Entry = serde_json::from_slice(&bytes).map_err(internal("reading", &key))?;
            if e.v > VERSION {
                return Err(newer(&self.store.url(&key)));
            }
            // An operation that does not fit changes nothing, for every reader alike.
            let applied = s.apply(seq, &e.op, &e.at);
            if let Err(r) = &applied {
                tracing::debug!(seq, refusal = ?r, "commit state: an operation that did not apply");
            }
            if mine.is_some_and(|(n, w)| n == seq && w == e.writer) {
                ours = Some(applied);
            }
        }
    }

    fn checkpoint(&self, s: &State) {
        let write = || -> Result<()> {
            let cp = serde_json::to_vec(&CheckpointOf {
                v: VERSION,
                state: s,
            })
            .map_err(|e| EngineError::Internal(format!("commit state checkpoint: {e}")))?;
            self.store.put(&self.checkpoint_key(s.seq), &cp)?;
            let latest = serde_json::to_vec(&Latest {
                v: VERSION,
                seq: s.seq,
            })
            .map_err(|e| EngineError::Internal(format!("commit state checkpoint: {e}")))?;
            self.store.put(&self.latest_key(), &latest)
        };
        // Checkpoints only shorten start-up: a failed one is tried again at the next.
        if let Err(e) = write() {
            tracing::warn!(error = %e, seq = s.seq, "commit state: checkpoint not written");
        }
    }

    /// Decides against the state at the log's head and writes the operation decided, until a
    /// write succeeds. With `cached`, an answer from the state as already read is taken
    /// without reading the log first: for facts that never change once made (a table, a
    /// column, a partition number); anything else the state as read cannot answer (a table
    /// another worker made, not read yet) is decided again at the head.
    fn transact<R>(
        &self,
        cached: bool,
        mut decide: impl FnMut(&State) -> Result<Step<R>>,
    ) -> Result<R> {
        let mut s = self.lock()?;
        if cached {
            if let Ok(Step::Answer(r)) = decide(&s) {
                return Ok(r);
            }
        }
        self.catch_up(&mut s, None)?;
        loop {
            let (op, answer) = match decide(&s)? {
                Step::Answer(r) => return Ok(r),
                Step::Write(op, r) => (op, r),
            };
            if !self.probed.load(Ordering::Relaxed) {
                self.check_conditional_writes()?;
                self.probed.store(true, Ordering::Relaxed);
                // The probe took time: decide again at the head.
                self.catch_up(&mut s, None)?;
                continue;
            }
            let seq = s.seq + 1;
            let n = WRITES.fetch_add(1, Ordering::Relaxed);
            let entry = Entry {
                v: VERSION,
                writer: format!("{}#{n}", self.writer),
                at: now(),
                op,
            };
            let key = self.log_key(seq);
            let body = serde_json::to_vec(&entry).map_err(internal("writing", &key))?;
            let ours = if again(|| self.store.create(&key, &body))? {
                Some(s.apply(seq, &entry.op, &entry.at))
            } else {
                self.catch_up(&mut s, Some((seq, &entry.writer)))?
            };
            if let Some(applied) = ours {
                applied.map_err(Refusal::into_error)?;
                // The writer of every CHECKPOINT_EVERY-th operation checkpoints the state.
                if seq % CHECKPOINT_EVERY == 0 {
                    self.checkpoint(&s);
                }
                return Ok(answer);
            }
        }
    }

    /// Reads the state at the log's head.
    fn read<R>(&self, f: impl FnOnce(&State) -> Result<R>) -> Result<R> {
        let mut s = self.lock()?;
        self.catch_up(&mut s, None)?;
        f(&s)
    }
}

/// Tries a store call again after a failure of the store itself (the client's own retries
/// spent, e.g. its retry quota exhausted by a run of faults), up to about half a minute. Every
/// call here may be repeated: reads, whole puts, and conditional writes, whose repetition is
/// recognised by the writer's number.
fn again<T>(what: impl Fn() -> Result<T>) -> Result<T> {
    let mut pause = std::time::Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        match what() {
            Err(EngineError::External {
                context, source, ..
            }) if attempts < 8 => {
                attempts += 1;
                tracing::warn!(%context, error = %source, ?pause, "commit state: the store failed; trying again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            r => return r,
        }
    }
}

fn newer(url: &str) -> EngineError {
    EngineError::config(
        format!("{url} was written by a newer sluice"),
        "run the same sluice version on every worker of a dataset",
    )
}

fn refused<R>(r: std::result::Result<Step<R>, Refusal>) -> Result<Step<R>> {
    r.map_err(Refusal::into_error)
}

impl Catalog for LogCatalog {
    fn ensure_database(&self, _database: &str) -> Result<()> {
        // A database is a name its tables carry: nothing to make, and nothing written before
        // the first table (a run refused for its configuration leaves the bucket untouched).
        Ok(())
    }

    fn tables(&self, database: &str) -> Result<Vec<CatalogTable>> {
        self.read(|s| Ok(s.tables_of(database)))
    }

    fn partitions(&self, table_id: i64) -> Result<Vec<Partition>> {
        self.read(|s| Ok(s.partitions_of(table_id)))
    }

    fn table(
        &self,
        database: &str,
        storage_for: &dyn Fn(&str) -> TableStorage,
        source_event: Option<&str>,
        fixed_name: Option<&str>,
        system: &[(&str, TypeClass)],
        propose: ProposeTable<'_>,
    ) -> Result<TableDef> {
        let at = now();
        self.transact(true, |s| {
            Ok(s.decide_table(
                database,
                storage_for,
                source_event,
                fixed_name,
                system,
                propose,
                &at,
            ))
        })
    }

    fn columns(
        &self,
        table: i64,
        wanted: &[ColumnRequest<'_>],
        max_columns: u32,
    ) -> Result<Vec<ColumnAssignment>> {
        let at = now();
        self.transact(true, |s| s.decide_columns(table, wanted, max_columns, &at))
    }

    fn table_def(&self, table: i64) -> Result<TableDef> {
        self.read(|s| s.table_def(table))
    }

    fn columns_from(&self, table: i64, from: u32) -> Result<Vec<ColumnDef>> {
        self.read(|s| s.columns_from(table, from))
    }

    fn partition_number(&self, source: &str, partition: &str) -> Result<i64> {
        self.transact(true, |s| Ok(s.decide_number(source, partition)))
    }

    fn claim(
        &self,
        sink: &str,
        worker: &str,
        source: &str,
        partitions: &[String],
    ) -> Result<(HashMap<String, Claim>, Vec<Manifest>)> {
        self.transact(false, |s| {
            Ok(s.decide_claim(sink, worker, source, partitions))
        })
    }

    fn begin_commit(
        &self,
        sink: &str,
        worker: &str,
        partitions: &[(String, String)],
    ) -> Result<i64> {
        self.transact(false, |s| Ok(s.decide_begin(sink, worker, partitions)))
    }

    fn plan_objects(&self, manifest: i64, objects: &[String]) -> Result<()> {
        self.transact(false, |s| {
            refused(s.decide_manifest_change(Op::Plan {
                manifest,
                objects: objects.to_vec(),
            }))
        })
    }

    fn set_stage(&self, manifest: i64, stage: CommitStage) -> Result<()> {
        self.transact(false, |s| {
            refused(s.decide_manifest_change(Op::Stage {
                manifest,
                stage: stage.as_str().to_string(),
            }))
        })
    }

    fn finish_commit(
        &self,
        manifest: i64,
        sink: &str,
        worker: &str,
        partitions: &[NewPartition],
        positions: &[SourcePosition],
    ) -> Result<()> {
        self.transact(false, |s| {
            refused(s.decide_finish(manifest, sink, worker, partitions, positions))
        })
    }

    fn unfinished(&self, sink: &str) -> Result<Vec<Manifest>> {
        self.read(|s| Ok(s.unfinished(sink)))
    }

    fn abandon(&self, manifest: i64) -> Result<()> {
        self.transact(false, |s| Ok(s.decide_abandon(manifest)))
    }

    fn schema_version(&self, database: &str) -> Result<i64> {
        self.read(|s| Ok(s.schema_version(database)))
    }

    fn name_mapping(&self, database: &str) -> Result<serde_json::Value> {
        self.read(|s| Ok(s.name_mapping(database)))
    }

    fn positions(&self, sink: &str) -> Result<HashMap<(String, String), u64>> {
        self.read(|s| Ok(s.positions_of(sink)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::contract::pos;
    use crate::store::{LocalStore, Upload};

    const ROOT: &str = "7/_sluice/state/";

    fn open(dir: &std::path::Path) -> LogCatalog {
        LogCatalog::open(Arc::new(LocalStore::open(dir).unwrap()), ROOT).unwrap()
    }

    /// Workers on separate machines, each with its own catalog over one store, race to claim
    /// and commit four partitions. Whatever the interleaving, each partition's commits that
    /// succeed follow one another without a gap or an overlap, and the state ends where the
    /// last of them does: no range is committed twice, none is skipped.
    #[test]
    fn workers_racing_over_one_store_commit_each_range_once() {
        let dir = tempfile::tempdir().unwrap();
        let parts: Vec<String> = (0..4).map(|i| format!("t/{i}")).collect();
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (path, parts) = (dir.path().to_path_buf(), parts.clone());
                std::thread::spawn(move || {
                    let cat = open(&path);
                    let worker = format!("W{w}");
                    let mut done = Vec::new();
                    let mut fenced = 0;
                    for round in 0..25u64 {
                        let mine = vec![parts[((w as u64 + round) % 4) as usize].clone()];
                        let (claims, _) = cat.claim("sink", &worker, "src", &mine).unwrap();
                        let from = claims[&mine[0]].next_offset.unwrap_or(0);
                        let key = [("src".to_string(), mine[0].clone())];
                        let m = cat.begin_commit("sink", &worker, &key).unwrap();
                        cat.plan_objects(m, &[format!("{worker}-{round}")])
                            .unwrap_or(());
                        let to = from + 1 + (round * 7 + w as u64) % 5;
                        match cat.finish_commit(m, "sink", &worker, &[], &[pos(&mine[0], from, to)])
                        {
                            Ok(()) => done.push((mine[0].clone(), from, to)),
                            Err(EngineError::Fenced(_)) => {
                                fenced += 1;
                                cat.abandon(m).unwrap();
                            }
                            Err(e) => panic!("{worker}: {e}"),
                        }
                    }
                    (done, fenced)
                })
            })
            .collect();
        let mut done = Vec::new();
        for w in workers {
            let (d, _fenced) = w.join().unwrap();
            done.extend(d);
        }
        let cat = open(dir.path());
        let positions = cat.positions("sink").unwrap();
        for p in &parts {
            let mut chain: Vec<(u64, u64)> = done
                .iter()
                .filter(|(q, _, _)| q == p)
                .map(|(_, a, b)| (*a, *b))
                .collect();
            chain.sort();
            let mut at = 0;
            for (from, to) in &chain {
                assert_eq!(*from, at, "partition {p}: {chain:?}");
                at = *to;
            }
            assert_eq!(
                positions
                    .get(&("src".into(), p.clone()))
                    .copied()
                    .unwrap_or(0),
                at
            );
        }
        assert!(!done.is_empty());
        assert!(cat.unfinished("sink").unwrap().is_empty());
    }

    /// A worker that starts after many operations reads a checkpoint and the few after it,
    /// and gets the state a reading of the whole log gives.
    #[test]
    fn a_checkpoint_and_the_operations_after_it_give_the_whole_log_state() {
        let dir = tempfile::tempdir().unwrap();
        let cat = open(dir.path());
        cat.ensure_database("db").unwrap();
        let storage = |n: &str| TableStorage {
            location: format!("file:///lake/{n}/"),
            format: "parquet".into(),
        };
        let t = cat
            .table(
                "db",
                &storage,
                None,
                Some("t"),
                &[("time", TypeClass::Timestamp)],
                &|_| "t".into(),
            )
            .unwrap();
        let propose = |_: Option<&str>, taken: &dyn Fn(&str) -> bool| {
            (0..).map(|i| format!("c{i}")).find(|n| !taken(n)).unwrap()
        };
        for i in 0..CHECKPOINT_EVERY + 10 {
            let raw = format!("p{i}");
            cat.column(t.id, &raw, TypeClass::Number, 10_000, &propose)
                .unwrap();
        }
        cat.claim("sink", "A", "src", &["t/0".into()]).unwrap();
        let m = cat
            .begin_commit("sink", "A", &[("src".into(), "t/0".into())])
            .unwrap();
        cat.finish_commit(m, "sink", "A", &[], &[pos("t/0", 0, 99)])
            .unwrap();
        let latest = dir.path().join(format!("{ROOT}latest.json"));
        assert!(latest.is_file(), "a checkpoint was written");

        let from_checkpoint = open(dir.path());
        std::fs::remove_file(&latest).unwrap();
        let from_log = open(dir.path());
        for other in [&from_checkpoint, &from_log] {
            assert_eq!(other.table_def(t.id).unwrap(), cat.table_def(t.id).unwrap());
            assert_eq!(
                other.positions("sink").unwrap(),
                cat.positions("sink").unwrap()
            );
            assert_eq!(
                other.name_mapping("db").unwrap(),
                cat.name_mapping("db").unwrap()
            );
            assert_eq!(
                other.schema_version("db").unwrap(),
                cat.schema_version("db").unwrap()
            );
        }
        // The next column is numbered after all of them, by any of them.
        let c = from_checkpoint
            .column(t.id, "new", TypeClass::Number, 10_000, &propose)
            .unwrap();
        let ColumnAssignment::Column(c) = c else {
            panic!("{c:?}")
        };
        assert_eq!(c.ordinal as u64, CHECKPOINT_EVERY + 11);
        assert_eq!(
            cat.table_def(t.id)
                .unwrap()
                .columns
                .last()
                .map(|c| c.name.clone()),
            Some(c.name)
        );
    }

    /// A local store whose conditional writes misbehave as some stores and networks do.
    enum Faulty {
        /// The log's writes land but their answers are lost, so the client's retry is refused
        /// (what S3 does when a connection drops after the write landed).
        LostAnswers(LocalStore),
        /// Overwrites whatever the condition says.
        NoConditions(LocalStore),
    }

    impl Faulty {
        fn inner(&self) -> &LocalStore {
            match self {
                Faulty::LostAnswers(s) | Faulty::NoConditions(s) => s,
            }
        }
    }

    impl ObjectStore for Faulty {
        fn put(&self, key: &str, data: &[u8]) -> Result<()> {
            self.inner().put(key, data)
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.inner().delete(key)
        }
        fn exists(&self, key: &str) -> Result<bool> {
            self.inner().exists(key)
        }
        fn get(&self, key: &str) -> Result<Vec<u8>> {
            self.inner().get(key)
        }
        fn get_if_exists(&self, key: &str) -> Result<Option<Vec<u8>>> {
            self.inner().get_if_exists(key)
        }
        fn create(&self, key: &str, data: &[u8]) -> Result<bool> {
            match self {
                Faulty::LostAnswers(s) => {
                    if key.contains("/log/") {
                        s.create(key, data)?;
                    }
                    s.create(key, data)
                }
                Faulty::NoConditions(s) => s.put(key, data).map(|()| true),
            }
        }
        fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
            self.inner().list(prefix)
        }
        fn url(&self, key: &str) -> String {
            self.inner().url(key)
        }
        fn upload(&self, key: &str) -> Result<Box<dyn Upload>> {
            self.inner().upload(key)
        }
    }

    #[test]
    fn a_write_refused_only_because_it_had_landed_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Faulty::LostAnswers(LocalStore::open(dir.path()).unwrap()));
        let cat = LogCatalog::open(store, ROOT).unwrap();
        cat.claim("sink", "A", "src", &["t/0".into()]).unwrap();
        let key = [("src".to_string(), "t/0".to_string())];
        let m1 = cat.begin_commit("sink", "A", &key).unwrap();
        cat.finish_commit(m1, "sink", "A", &[], &[pos("t/0", 0, 10)])
            .unwrap();
        let m2 = cat.begin_commit("sink", "A", &key).unwrap();
        assert_eq!(m2, m1 + 1);
        cat.finish_commit(m2, "sink", "A", &[], &[pos("t/0", 10, 20)])
            .unwrap();
        // Five operations, each written once.
        let log = LocalStore::open(dir.path()).unwrap();
        assert_eq!(log.list(&format!("{ROOT}log/")).unwrap().len(), 5);
        assert_eq!(
            open(dir.path()).positions("sink").unwrap()[&("src".into(), "t/0".into())],
            20
        );
    }

    #[test]
    fn a_store_that_ignores_conditional_writes_is_refused_before_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Faulty::NoConditions(LocalStore::open(dir.path()).unwrap()));
        // Reading writes nothing, and needs no check.
        let cat = LogCatalog::open(store, ROOT).unwrap();
        assert!(cat.positions("sink").unwrap().is_empty());
        let err = cat
            .claim("sink", "A", "src", &["t/0".into()])
            .expect_err("refused");
        let log = LocalStore::open(dir.path()).unwrap();
        assert!(log.list(&format!("{ROOT}log/")).unwrap().is_empty());
        let text = err.to_string();
        assert!(text.contains("If-None-Match"), "{text}");
        assert!(matches!(err, EngineError::Config(_)), "{err:?}");
    }
}
