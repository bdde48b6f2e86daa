//! The sink's commit cycle.
//!
//! An *epoch* is everything received since the last commit. While it runs, a window whose rows
//! reach a row group encodes them into its file, which goes to the store as it grows (parts of
//! a multipart upload) but stays invisible. Committing the epoch:
//! 1. start a manifest, then record the keys of every file of the epoch (stage `planned`);
//!    keys name the worker's run and epoch, so they exist before the commit does;
//! 2. publish the tables' schemas (the table's schema is already in the catalog: `type-infer`
//!    registers a column before any event that uses it gets here);
//! 3. finish each file and make it visible (complete the upload), one window at a time;
//! 4. in one catalog transaction: register new partitions, advance the source positions,
//!    mark the manifest done.
//!
//! On open, unfinished manifests are resolved by `sluice_engine::commit::decide`. Events at
//! positions already committed are dropped on arrival, so re-reading after a crash writes
//! each event once.

use crate::failpoints::crash_point;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_engine::batch::{Batch, DeadLetter, Events};
use sluice_engine::commit::{decide, CommitStage, Observed, Recovery};
use sluice_engine::component::{Sink, SinkContext, TableDef};
use sluice_engine::ownership::{worker_id, Claim, Ownership, Rewind};
use sluice_engine::runtime::Partitions;
use sluice_engine::stats::RunStats;
use sluice_engine::{EngineError, Result};

use super::config::{Dataset, Roll};
use super::file::{ClosedFile, OpenFile};
use super::window::{arrow_schema, Pick, SystemColumns, Window};

use super::{Compression, DataFormat};
use crate::catalog::{Catalog, CatalogTable, Manifest, NewPartition, SourcePosition};
use crate::kafka::produce::TopicProducer;
use crate::store::ObjectStore;

/// Looked up once per event: a fast non-cryptographic hasher.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A finished file of the epoch, waiting for the commit to make it visible.
struct Pending {
    file: ClosedFile,
    table_id: i64,
    date: i32,
    table: String,
}

pub struct LakeSink {
    name: String,
    ds: Dataset,
    roll: Roll,
    format: DataFormat,
    compression: Compression,
    stats: Arc<RunStats>,
    partitions: Arc<Partitions>,
    /// Table definitions, shared so that looking one up per event copies nothing.
    defs: FastMap<i64, Arc<(TableDef, SystemColumns)>>,
    windows: FastMap<(i64, i32), Window>,
    /// The room each column of a (table, date) window had in its last row group of the last
    /// epoch: the same window in the next epoch (a stream's current day, each `roll.max_age`)
    /// starts with it, instead of doubling its way up, copying as it goes, at every epoch.
    rooms: FastMap<(i64, i32), Vec<(usize, usize)>>,
    pending: Vec<Pending>,
    /// Names this process's files: unique per worker and sink, with `epoch`.
    run: String,
    /// Epochs ended (committed or abandoned) by this sink.
    epoch: u64,
    dead: Vec<DeadLetter>,
    /// Positions accounted for in this epoch, by partition number.
    progress: FastMap<u32, u64>,
    /// Committed positions, by (source, partition key), and resolved per partition number.
    committed_by_key: HashMap<(String, String), u64>,
    claimed: Claimed,
    committed: FastMap<u32, u64>,
    partition_numbers: FastMap<u32, i64>,
    epoch_started: Option<Instant>,
    held_bytes: u64,
    /// The catalog's schema version when `schema/events.json` was last written.
    mapping_version: Option<i64>,
    /// Unique within the catalog: the database and the sink's name.
    sink_id: String,
    worker: String,
    /// The rewind generation of what this sink holds; older batches are dropped.
    generation: u64,
    rewind: Arc<Rewind>,
    /// Dead letters go to this topic instead of the store.
    dead_topic: Option<TopicProducer>,
    /// What the published catalog (Glue) has been given by this process.
    published_columns: FastMap<i64, usize>,
    published_tables: FastMap<i64, CatalogTable>,
    published_parts: std::collections::HashSet<(i64, String)>,
}

/// The lake sink's partition ownership: claims in its catalog, and recovery of the commits that
/// earlier owners of the claimed partitions left unfinished.
pub struct LakeOwnership {
    name: String,
    sink_id: String,
    worker: String,
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    claimed: Claimed,
}

/// Committed positions of partitions just claimed, for the sink to take up (another worker
/// may have advanced them since the sink last looked).
type Claimed = Arc<Mutex<HashMap<(String, String), u64>>>;

impl Ownership for LakeOwnership {
    fn claim(&self, source: &str, partitions: &[String]) -> Result<HashMap<String, Claim>> {
        let (claims, orphans) =
            self.catalog
                .claim(&self.sink_id, &self.worker, source, partitions)?;
        for m in orphans {
            recover(&self.name, &*self.catalog, &*self.store, &m)?;
        }
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        for (key, c) in &claims {
            claimed.insert(
                (source.to_string(), key.clone()),
                c.next_offset.unwrap_or(0),
            );
        }
        Ok(claims)
    }
    fn committed(&self, source: &str) -> Result<HashMap<String, u64>> {
        Ok(self
            .catalog
            .positions(&self.sink_id)?
            .into_iter()
            .filter(|((s, _), _)| s == source)
            .map(|((_, k), v)| (k, v))
            .collect())
    }
}

/// Resolves a manifest whose worker can no longer finish it (see `sluice_engine::commit`).
fn recover(name: &str, catalog: &dyn Catalog, store: &dyn ObjectStore, m: &Manifest) -> Result<()> {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for o in &m.objects {
        if store.exists(o)? {
            present.push(o.clone());
        } else {
            missing.push(o.clone());
        }
    }
    let decision = decide(&Observed {
        stage: m.stage,
        present,
        missing,
        owner: true,
    });
    tracing::warn!(sink = %name, manifest = m.id, worker = %m.worker, ?decision, "resolving an interrupted commit");
    match decision {
        Recovery::Nothing => catalog.abandon(m.id),
        Recovery::RollBack { delete } => {
            for k in delete {
                store.delete(&k)?;
            }
            catalog.abandon(m.id)
        }
        Recovery::RollForward | Recovery::Fenced => {
            // The local catalog registers partitions and positions in one transaction, so a
            // manifest never stops between them.
            Err(EngineError::Internal(format!(
                "manifest {} is in stage {} which the local catalog never leaves",
                m.id,
                m.stage.as_str()
            )))
        }
        Recovery::Inconsistent { reason } => Err(EngineError::Internal(format!(
            "manifest {}: {reason}",
            m.id
        ))),
    }
}

impl LakeSink {
    pub fn new(
        name: String,
        ds: Dataset,
        roll: Roll,
        format: DataFormat,
        compression: Compression,
        stats: Arc<RunStats>,
    ) -> Self {
        let sink_id = format!("{}/{}", ds.database, name);
        LakeSink {
            name,
            ds,
            roll,
            format,
            compression,
            stats,
            partitions: Arc::new(Partitions::default()),
            defs: FastMap::default(),
            windows: FastMap::default(),
            rooms: FastMap::default(),
            pending: Vec::new(),
            run: run_tag(worker_id(), &sink_id),
            epoch: 0,
            dead: Vec::new(),
            progress: FastMap::default(),
            committed_by_key: HashMap::new(),
            claimed: Claimed::default(),
            committed: FastMap::default(),
            partition_numbers: FastMap::default(),
            epoch_started: None,
            held_bytes: 0,
            mapping_version: None,
            sink_id,
            worker: worker_id().to_string(),
            generation: 0,
            rewind: Arc::new(Rewind::default()),
            dead_topic: None,
            published_columns: FastMap::default(),
            published_tables: FastMap::default(),
            published_parts: Default::default(),
        }
    }

    /// Before files that use them are written, the published catalog (Glue) gets every column
    /// the registry has for the tables of this epoch.
    fn publish_tables(&mut self, touched: &std::collections::HashSet<i64>) -> Result<()> {
        let Some(publisher) = self.ds.publisher.clone() else {
            return Ok(());
        };
        // The registry's definition (`defs`) covers every column the epoch's files use.
        let stale = touched.iter().any(|id| {
            let used = self.defs.get(id).map(|d| d.0.columns.len());
            match (self.published_columns.get(id), used) {
                (Some(have), Some(used)) => *have < used,
                _ => true,
            }
        });
        if !stale {
            return Ok(());
        }
        for t in self.ds.catalog.tables(&self.ds.database)? {
            if touched.contains(&t.def.id) {
                publisher.publish_table(&t)?;
                self.published_columns.insert(t.def.id, t.def.columns.len());
                self.published_tables.insert(t.def.id, t);
            }
        }
        Ok(())
    }

    /// After the files are written, their `mp_date` partitions are registered where they are
    /// not yet (once per process and day; "already exists" is success).
    fn publish_partitions(&mut self, parts: &[NewPartition]) -> Result<()> {
        let Some(publisher) = self.ds.publisher.clone() else {
            return Ok(());
        };
        let mut by_table: std::collections::BTreeMap<i64, Vec<(String, String)>> =
            Default::default();
        for p in parts {
            if !self
                .published_parts
                .contains(&(p.table_id, p.value.clone()))
            {
                by_table
                    .entry(p.table_id)
                    .or_default()
                    .push((p.value.clone(), p.location.clone()));
            }
        }
        for (table_id, list) in by_table {
            let Some(t) = self.published_tables.get(&table_id) else {
                return Err(EngineError::Internal(format!(
                    "table {table_id} has files but was not published"
                )));
            };
            publisher.publish_partitions(t, &list)?;
            for (v, _) in list {
                self.published_parts.insert((table_id, v));
            }
        }
        Ok(())
    }

    /// Sends dead letters to a Kafka topic instead of the store.
    pub fn dead_letters_to(&mut self, producer: TopicProducer) {
        self.dead_topic = Some(producer);
    }

    /// A dead letter as the JSON record both destinations hold.
    fn dead_record(&self, d: &DeadLetter) -> (String, String) {
        let (source, partition) = self.partitions.get(d.pos.partition).unwrap_or_default();
        let key = format!("{source}/{partition}/{}", d.pos.offset);
        let line = serde_json::json!({
            "reason": d.reason,
            "source": source,
            "partition": partition,
            "offset": d.pos.offset,
            "raw": d.raw,
        });
        (key, line.to_string())
    }

    /// Drops everything held: it will be read again from the committed positions.
    fn abandon_epoch(&mut self) {
        for (_, w) in self.windows.drain() {
            if let Some(f) = w.file {
                f.abort();
            }
        }
        for p in self.pending.drain(..) {
            p.file.upload.abort();
        }
        self.epoch += 1;
        self.dead.clear();
        self.progress.clear();
        self.held_bytes = 0;
        self.epoch_started = None;
    }

    /// Takes up the committed positions of partitions claimed since the last batch, except
    /// for partitions this epoch already holds events of: those keep the position the epoch
    /// started from, and if someone else committed since, the commit is refused (fenced).
    fn take_up_claims(&mut self) {
        let claimed = std::mem::take(&mut *self.claimed.lock().unwrap_or_else(|p| p.into_inner()));
        for ((source, key), next) in claimed {
            let pid = self.partitions.intern(&source, &key);
            if !self.progress.contains_key(&pid) {
                self.committed.insert(pid, next);
            }
            self.committed_by_key.insert((source, key), next);
        }
    }

    fn committed_offset(&mut self, partition: u32) -> u64 {
        if let Some(v) = self.committed.get(&partition) {
            return *v;
        }
        let v = self
            .partitions
            .get(partition)
            .and_then(|k| self.committed_by_key.get(&k).copied())
            .unwrap_or(0);
        self.committed.insert(partition, v);
        v
    }

    fn def(&mut self, table_id: i64, need: u32) -> Result<Arc<(TableDef, SystemColumns)>> {
        if let Some(e) = self.defs.get_mut(&table_id) {
            let have = e.0.columns.len() as u32;
            if have > need {
                return Ok(e.clone());
            }
            // Columns are only appended: only the new ones are read. Reading the whole
            // definition again, at each batch that brings new columns, cost the table's width
            // each time (3% of a run with 8,000 columns).
            let more = self.ds.catalog.columns_from(table_id, have)?;
            if more.iter().zip(have..).all(|(c, o)| c.ordinal == o) {
                Arc::make_mut(e).0.columns.extend(more);
                return Ok(e.clone());
            }
        }
        let d = self.ds.catalog.table_def(table_id)?;
        let sys = SystemColumns::of(&d)?;
        let e = Arc::new((d, sys));
        self.defs.insert(table_id, e.clone());
        Ok(e)
    }

    /// Appends a batch's events to their (table, date) windows, a fragment at a time, and
    /// encodes the row groups that filled. Events at positions already committed are skipped;
    /// returns how many.
    fn append(&mut self, ev: &Events) -> Result<u64> {
        let n = ev.len();
        if n == 0 {
            return Ok(0);
        }
        if ev.table.len() != n || ev.date.len() != n {
            return Err(EngineError::Internal(
                "an event reached the sink without a table or a date".into(),
            ));
        }
        // The windows (table, date) the batch's events go to, and for each, its runs of
        // consecutive events; events whose position is already committed go nowhere.
        let mut skipped = 0u64;
        let mut targets: Vec<(u32, i32)> = Vec::new();
        let mut runs: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut current: Option<(usize, u32)> = None;
        let mut last_partition: Option<(u32, u64)> = None;
        for r in 0..n {
            let pos = ev.pos[r];
            let committed = match last_partition {
                Some((p, c)) if p == pos.partition => c,
                _ => {
                    let c = self.committed_offset(pos.partition);
                    last_partition = Some((pos.partition, c));
                    c
                }
            };
            let target = if pos.offset < committed {
                skipped += 1;
                None
            } else {
                let key = (ev.table[r], ev.date[r]);
                match current {
                    Some((t, _)) if targets[t] == key => Some(t),
                    _ => Some(match targets.iter().position(|&t| t == key) {
                        Some(t) => t,
                        None => {
                            targets.push(key);
                            runs.push(Vec::new());
                            targets.len() - 1
                        }
                    }),
                }
            };
            let r = r as u32;
            match (current, target) {
                (Some((t, _)), Some(u)) if t == u => {}
                _ => {
                    if let Some((t, start)) = current {
                        runs[t].push((start, r));
                    }
                    current = target.map(|t| (t, r));
                }
            }
        }
        if let Some((t, start)) = current {
            runs[t].push((start, n as u32));
        }
        if targets.is_empty() {
            return Ok(skipped);
        }
        // The columns each table needs its definition to know.
        let mut need = vec![0u32; ev.tables.len()];
        for f in &ev.props {
            for c in &f.columns {
                if let Some(x) = need.get_mut(c.table as usize) {
                    *x = (*x).max(c.ordinal);
                }
            }
        }
        let whole = targets.len() == 1 && skipped == 0;
        let all = [(0u32, n as u32)];
        // What an event holds, on average in this batch: where a row group fills within a
        // batch, the batch is cut there (row groups keep their size, whatever the batch's).
        let per_event = (ev.approx_bytes() / n).max(1);
        for (t, &(table, date)) in targets.iter().enumerate() {
            let Some(tref) = ev.tables.get(table as usize) else {
                return Err(EngineError::Internal("an event's table is unknown".into()));
            };
            let entry = self.def(tref.id, need[table as usize])?;
            let (def, sys) = (&entry.0, entry.1);
            let key = (tref.id, date);
            // The width's row group size is never below the configured one.
            let group_bytes = self
                .roll
                .row_group_bytes
                .max(self.roll.row_group_bytes_for(def.columns.len()));
            // The window's runs go in together, in one append (each append looks at every
            // fragment of the batch: one per run made a batch of events spread over dates, with
            // many rare names, cost runs times fragments); cut where a row group fills.
            let mut rest: Vec<(u32, u32)> = if whole {
                all.to_vec()
            } else {
                std::mem::take(&mut runs[t])
            };
            // The first run not appended yet (its start moved up where a row group filled).
            let mut k = 0usize;
            let mut take: Vec<(u32, u32)> = Vec::with_capacity(rest.len());
            while k < rest.len() {
                let w = self.windows.entry(key).or_insert_with(|| {
                    let room = self.rooms.remove(&key).unwrap_or_default();
                    Window::with_room(tref.id, date, room)
                });
                let in_file = w.file.as_ref().map_or(0, |f| f.value_bytes);
                let limit = group_bytes.min(self.roll.max_file_bytes.saturating_sub(in_file));
                let room = limit.saturating_sub(w.bytes as u64) as usize;
                let mut fit = room.div_ceil(per_event).max(1) as u32;
                take.clear();
                while k < rest.len() && fit > 0 {
                    let (a, b) = rest[k];
                    let end = b.min(a.saturating_add(fit));
                    take.push((a, end));
                    fit -= end - a;
                    if end < b {
                        rest[k].0 = end;
                    } else {
                        k += 1;
                    }
                }
                let before = w.bytes;
                let pick = if whole && take.as_slice() == all.as_slice() {
                    Pick::All
                } else {
                    Pick::Runs(&take)
                };
                w.append(ev, table, pick, def, sys)?;
                self.held_bytes += (w.bytes - before) as u64;
                let held = w.bytes as u64;
                if held >= group_bytes || in_file + held >= self.roll.max_file_bytes {
                    // A row group: encoded, and on its way to the store.
                    self.flush_rows(key)?;
                    if in_file + held >= self.roll.max_file_bytes {
                        // Roll on size: the file is finished, and made visible at the
                        // commit.
                        self.close_file(key)?;
                    }
                }
            }
        }
        Ok(skipped)
    }

    /// `<prefix>/<project_id>/<table>/<YYYY>/<MM>/<DD>/` (SPEC §7.1): a partition's location.
    fn day_folder(&self, table: &str, date: i32) -> String {
        let d = date_string(date);
        format!(
            "{}{table}/{}/{}/{}/",
            self.ds.base_key,
            &d[0..4],
            &d[5..7],
            &d[8..10]
        )
    }

    /// The key of a data file (SPEC §7.1, §12 D8), in its day folder:
    /// `full_day-<run>-<epoch>-<partition number>-<first offset>-<seq>.<ext>`. The run and
    /// epoch make it unique to this worker's epoch: a file can go up before its commit exists,
    /// and a fenced worker that deletes its own files cannot hit another's.
    fn object_key(
        &mut self,
        first: sluice_engine::Position,
        seq: u32,
        table: &str,
        date: i32,
    ) -> Result<String> {
        let pnum = match self.partition_numbers.get(&first.partition) {
            Some(n) => *n,
            None => {
                let (source, key) = self.partitions.get(first.partition).ok_or_else(|| {
                    EngineError::Internal(format!("unknown partition {}", first.partition))
                })?;
                let n = self.ds.catalog.partition_number(&source, &key)?;
                self.partition_numbers.insert(first.partition, n);
                n
            }
        };
        Ok(format!(
            "{}full_day-{}-{}-{pnum}-{}-{seq}.{}",
            self.day_folder(table, date),
            self.run,
            self.epoch,
            first.offset,
            self.format.extension()
        ))
    }

    /// Encodes a window's rows into its file (started on the first row group), which sends
    /// them on to the store.
    fn flush_rows(&mut self, key: (i64, i32)) -> Result<()> {
        let Some(mut w) = self.windows.remove(&key) else {
            return Ok(());
        };
        let r = self.flush_window(&mut w);
        self.windows.insert(key, w);
        r
    }

    fn flush_window(&mut self, w: &mut Window) -> Result<()> {
        if w.rows == 0 {
            return Ok(());
        }
        let entry = self.def(w.table_id, 0)?;
        let def = &entry.0;
        if w.outgrew_file(def.columns.len()) {
            self.close_window_file(w, &def.name)?;
        }
        let new_key = match w.file {
            Some(_) => None,
            None => {
                let first = w
                    .first
                    .ok_or_else(|| EngineError::Internal("window without a first row".into()))?;
                Some(self.object_key(first, w.seq, &def.name, w.date)?)
            }
        };
        let value_bytes = w.bytes as u64;
        let rows = w.take_rows(def);
        if let Some(key) = new_key {
            // A file's encodings are chosen on its first row group.
            w.file = Some(OpenFile::start(
                &*self.ds.store,
                key,
                self.format,
                self.compression,
                arrow_schema(def),
                &rows.plain_columns(),
            )?);
        }
        self.held_bytes = self.held_bytes.saturating_sub(value_bytes);
        w.file
            .as_mut()
            .ok_or_else(|| EngineError::Internal("a window lost its file".into()))?
            .write(rows, value_bytes)
    }

    /// Finishes a window's file; it waits for the commit.
    fn close_file(&mut self, key: (i64, i32)) -> Result<()> {
        let Some(mut w) = self.windows.remove(&key) else {
            return Ok(());
        };
        let name = self.def(key.0, 0).map(|d| d.0.name.clone());
        let r = name.and_then(|n| self.close_window_file(&mut w, &n));
        self.windows.insert(key, w);
        r
    }

    fn close_window_file(&mut self, w: &mut Window, table: &str) -> Result<()> {
        if let Some(f) = w.file.take() {
            self.pending.push(Pending {
                file: f.close()?,
                table_id: w.table_id,
                date: w.date,
                table: table.to_string(),
            });
            w.seq += 1;
        }
        Ok(())
    }

    fn has_work(&self) -> bool {
        self.epoch_started.is_some()
    }

    /// Commits the epoch (see the module docs).
    fn commit(&mut self) -> Result<()> {
        if !self.has_work() {
            return Ok(());
        }
        let started = Instant::now();
        let mut touched = Vec::with_capacity(self.progress.len());
        for p in self.progress.keys() {
            touched.push(
                self.partitions
                    .get(*p)
                    .ok_or_else(|| EngineError::Internal(format!("unknown partition {p}")))?,
            );
        }
        touched.sort();
        let manifest = self
            .ds
            .catalog
            .begin_commit(&self.sink_id, &self.worker, &touched)?;
        crash_point!("lake.commit.begun");
        // The epoch's files: those finished on size, then one per window with rows or an open
        // file. Every key is planned before any file is made visible; windows are finished and
        // completed one at a time, so that a commit of many windows never holds all their
        // files at once.
        let mut open: Vec<(i64, i32)> = self
            .windows
            .iter()
            .filter(|(_, w)| w.rows > 0 || w.file.is_some())
            .map(|(k, _)| *k)
            .collect();
        open.sort_unstable();
        // A file whose schema lacks columns of the rows still held is finished first: those
        // rows go to a new file, whose key must be planned too.
        for k in &open {
            let width = self.def(k.0, 0)?.0.columns.len();
            if self.windows.get(k).is_some_and(|w| w.outgrew_file(width)) {
                self.close_file(*k)?;
            }
        }
        let mut objects = Vec::with_capacity(self.pending.len() + open.len() + 1);
        let mut days: std::collections::BTreeMap<(i64, i32), String> = Default::default();
        for p in &self.pending {
            objects.push(p.file.key.clone());
            days.insert((p.table_id, p.date), p.table.clone());
        }
        let mut open_keys = Vec::with_capacity(open.len());
        for k in &open {
            let table = self.def(k.0, 0)?.0.name.clone();
            let w = self
                .windows
                .get(k)
                .ok_or_else(|| EngineError::Internal("an open window vanished".into()))?;
            let key = match (&w.file, w.first) {
                (Some(f), _) => f.key.clone(),
                (None, Some(first)) => {
                    let seq = w.seq;
                    self.object_key(first, seq, &table, k.1)?
                }
                (None, None) => {
                    return Err(EngineError::Internal("window without a first row".into()))
                }
            };
            objects.push(key.clone());
            open_keys.push(key);
            days.insert(*k, table);
        }
        let dead_key = if self.dead.is_empty() || self.dead_topic.is_some() {
            None
        } else {
            let prefix = if self.ds.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", self.ds.prefix)
            };
            let k = format!(
                "{prefix}_dead_letters/{}/dead-{manifest:08}.ndjson",
                self.name
            );
            objects.push(k.clone());
            Some(k)
        };
        match self.ds.catalog.plan_objects(manifest, &objects) {
            Err(EngineError::Fenced(why)) => return self.fenced(manifest, &objects, &why),
            r => r?,
        }

        self.publish_tables(&days.keys().map(|k| k.0).collect())?;
        crash_point!("lake.commit.tables-published");
        let mut bytes_written = 0u64;
        let mut rows_written: Vec<(String, usize)> = Vec::with_capacity(objects.len());
        for p in std::mem::take(&mut self.pending) {
            let bytes = p.file.bytes;
            let rows = p.file.rows;
            p.file.upload.complete()?;
            bytes_written += bytes;
            rows_written.push((p.table, rows));
            crash_point!("lake.commit.some-objects");
        }
        for (k, planned) in open.into_iter().zip(open_keys) {
            self.flush_rows(k)?;
            self.close_file(k)?;
            let p = self
                .pending
                .pop()
                .ok_or_else(|| EngineError::Internal("an open window had no file".into()))?;
            if p.file.key != planned {
                return Err(EngineError::Internal(format!(
                    "file {} was planned as {planned}",
                    p.file.key
                )));
            }
            let bytes = p.file.bytes;
            let rows = p.file.rows;
            p.file.upload.complete()?;
            bytes_written += bytes;
            rows_written.push((p.table, rows));
            crash_point!("lake.commit.some-objects");
        }
        if let Some(k) = &dead_key {
            let mut text = String::new();
            for d in &self.dead {
                text.push_str(&self.dead_record(d).1);
                text.push('\n');
            }
            self.ds.store.put(k, text.as_bytes())?;
            bytes_written += text.len() as u64;
        }
        if let Some(p) = &self.dead_topic {
            if !self.dead.is_empty() {
                for d in &self.dead {
                    let (key, line) = self.dead_record(d);
                    p.send(Some(key.as_bytes()), line.as_bytes())?;
                }
                // Acknowledged before the positions move: none is lost.
                p.flush(std::time::Duration::from_secs(120))?;
                let failed = p.delivery.failed.load(std::sync::atomic::Ordering::Relaxed);
                if failed > 0 {
                    return Err(EngineError::external(
                        "sending dead letters to Kafka",
                        format!(
                            "{failed} dead letter(s) not delivered: {}",
                            p.delivery.last_error().unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        match self
            .ds
            .catalog
            .set_stage(manifest, CommitStage::ObjectsWritten)
        {
            Err(EngineError::Fenced(why)) => return self.fenced(manifest, &objects, &why),
            r => r?,
        }
        crash_point!("lake.commit.objects-written");
        self.write_name_mapping()?;

        let parts: Vec<NewPartition> = days
            .into_iter()
            .map(|((table_id, date), table)| NewPartition {
                table_id,
                value: date_string(date),
                location: self.ds.store.url(&self.day_folder(&table, date)),
            })
            .collect();
        self.publish_partitions(&parts)?;
        crash_point!("lake.commit.partitions-published");
        let mut positions = Vec::new();
        for (p, next) in &self.progress {
            let (source, key) = self
                .partitions
                .get(*p)
                .ok_or_else(|| EngineError::Internal(format!("unknown partition {p}")))?;
            let expected = self.committed.get(p).copied().unwrap_or(0);
            positions.push(SourcePosition {
                source,
                partition: key,
                expected,
                next_offset: *next,
            });
        }
        match self.ds.catalog.finish_commit(
            manifest,
            &self.sink_id,
            &self.worker,
            &parts,
            &positions,
        ) {
            Ok(()) => {}
            Err(EngineError::Fenced(why)) => return self.fenced(manifest, &objects, &why),
            Err(e) => return Err(e),
        }

        crash_point!("lake.commit.done");
        // Committed: account for it.
        for (table, rows) in &rows_written {
            self.stats.add_rows(&self.name, table, *rows as u64);
            metrics::counter!("sluice_sink_rows_total", "sink" => self.name.clone(), "table" => table.clone())
                .increment(*rows as u64);
        }
        let files = rows_written.len() as u64 + u64::from(dead_key.is_some());
        RunStats::add(&self.stats.files_written, files);
        RunStats::add(&self.stats.bytes_written, bytes_written);
        RunStats::add(&self.stats.dead_letters, self.dead.len() as u64);
        RunStats::add(&self.stats.commits, 1);
        metrics::counter!("sluice_sink_files_total", "sink" => self.name.clone()).increment(files);
        metrics::counter!("sluice_sink_bytes_total", "sink" => self.name.clone())
            .increment(bytes_written);
        metrics::counter!("sluice_dead_letters_total", "sink" => self.name.clone())
            .increment(self.dead.len() as u64);
        metrics::histogram!("sluice_commit_seconds", "sink" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        for (p, next) in self.progress.drain() {
            self.committed.insert(p, next);
        }
        tracing::info!(
            sink = %self.name,
            manifest,
            files,
            rows = rows_written.iter().map(|r| r.1).sum::<usize>(),
            dead_letters = self.dead.len(),
            "committed"
        );
        self.dead.clear();
        // Only the windows of this epoch are remembered: a date no longer written leaves.
        self.rooms = self
            .windows
            .drain()
            .filter_map(|(key, w)| w.into_room().map(|room| (key, room)))
            .collect();
        self.held_bytes = 0;
        self.epoch_started = None;
        self.epoch += 1;
        Ok(())
    }
}

impl LakeSink {
    /// Another worker owns part of this epoch now, or resolved its commit: nothing of it may
    /// become visible. Removes what was written, drops what is held, and has the sources read
    /// their remaining partitions again from the committed positions.
    fn fenced(&mut self, manifest: i64, objects: &[String], why: &str) -> Result<()> {
        for k in objects {
            self.ds.store.delete(k)?;
        }
        self.ds.catalog.abandon(manifest)?;
        self.abandon_epoch();
        // What is committed now is what the sources go back to.
        self.committed_by_key = self.ds.catalog.positions(&self.sink_id)?;
        self.committed.clear();
        self.generation = self.rewind.request();
        RunStats::add(&self.stats.fenced, 1);
        tracing::warn!(sink = %self.name, manifest, %why, "fenced: the epoch is dropped and read again");
        Ok(())
    }

    /// Rewrites `<prefix>/<project_id>/schema/events.json` (SPEC §11) when the schema changed.
    fn write_name_mapping(&mut self) -> Result<()> {
        let version = self.ds.catalog.schema_version(&self.ds.database)?;
        if self.mapping_version == Some(version) {
            return Ok(());
        }
        let doc = self.ds.catalog.name_mapping(&self.ds.database)?;
        let text = serde_json::to_vec_pretty(&doc)
            .map_err(|e| EngineError::Internal(format!("name mapping: {e}")))?;
        self.ds
            .store
            .put(&format!("{}schema/events.json", self.ds.base_key), &text)?;
        self.mapping_version = Some(version);
        Ok(())
    }
}

/// Names a sink's files in one process: a hash of the worker's id (host, pid, start time)
/// and the sink's.
fn run_tag(worker: &str, sink: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    worker.hash(&mut h);
    sink.hash(&mut h);
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// `YYYY-MM-DD` of days since 1970-01-01.
pub fn date_string(days: i32) -> String {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (epoch + chrono::Duration::days(days as i64))
        .format("%Y-%m-%d")
        .to_string()
}

impl Sink for LakeSink {
    fn open(&mut self, cx: &SinkContext) -> Result<()> {
        self.partitions = cx.partitions.clone();
        self.rewind = cx.rewind.clone();
        self.generation = self.rewind.current();
        // Unfinished commits are resolved when their partitions are claimed (`LakeOwnership`):
        // before that, their worker may still be finishing them.
        self.committed_by_key = self.ds.catalog.positions(&self.sink_id)?;
        Ok(())
    }

    fn ownership(&self) -> Arc<dyn Ownership> {
        Arc::new(LakeOwnership {
            name: self.name.clone(),
            sink_id: self.sink_id.clone(),
            worker: self.worker.clone(),
            catalog: self.ds.catalog.clone(),
            store: self.ds.store.clone(),
            claimed: self.claimed.clone(),
        })
    }

    fn write(&mut self, batch: Batch) -> Result<()> {
        if batch.generation < self.generation {
            // Read before a rewind: the sources read it again.
            return Ok(());
        }
        if batch.generation > self.generation {
            // Another sink of the run was fenced and the sources went back to the committed
            // positions: what this sink holds will arrive again.
            self.abandon_epoch();
            self.generation = batch.generation;
        }
        self.take_up_claims();
        let mut skipped = self.append(&batch.events)?;
        for d in batch.dead {
            if d.pos.offset < self.committed_offset(d.pos.partition) {
                skipped += 1;
                continue;
            }
            self.held_bytes += d.raw.len() as u64;
            self.dead.push(d);
        }
        RunStats::add(&self.stats.already_committed, skipped);
        RunStats::add(&self.stats.filtered, batch.filtered);
        for (p, next) in batch.progress {
            let cur = self.committed_offset(p);
            if next > cur {
                let e = self.progress.entry(p).or_insert(0);
                *e = (*e).max(next);
                if self.epoch_started.is_none() {
                    self.epoch_started = Some(Instant::now());
                }
            }
        }
        if self.held_bytes >= self.roll.max_buffer_bytes {
            self.commit()?;
        }
        Ok(())
    }

    fn poll(&mut self, now: Instant) -> Result<()> {
        if self.rewind.flush_requested() {
            // A flush for what a source sent: wait until all of it has arrived, so that it
            // is one commit.
            let targets = self.rewind.flush_targets();
            let arrived = targets.into_iter().all(|(p, at)| {
                let got = self.progress.get(&p).copied().unwrap_or(0);
                got.max(self.committed_offset(p)) >= at
            });
            if arrived {
                return self.commit();
            }
        }
        if let Some(s) = self.epoch_started {
            if now.duration_since(s) >= self.roll.max_age {
                self.commit()?;
            }
        }
        Ok(())
    }

    fn relieve_memory(&mut self) -> Result<()> {
        self.commit()
    }

    fn finish(&mut self) -> Result<()> {
        self.commit()
    }
}
