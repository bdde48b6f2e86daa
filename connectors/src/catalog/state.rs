//! The commit state as a value: what a log of operations folds to.
//!
//! [`super::LogCatalog`] keeps the commit protocol's state (the schema registry, manifests,
//! owners, positions, partitions) as a sequence of [`Op`]s in an object store, each written
//! once with a conditional put at the next free sequence number. Every reader folds the same
//! operations in the same order with [`State::apply`], so every worker, on any machine, sees
//! the same state at the same sequence number.
//!
//! A writer decides its operation against the state at the log's head (the decision functions
//! here, free of I/O), then writes it at the next number: if another worker wrote that number
//! first, it reads what was written and decides again. So a check and the change it guards
//! (a commit's ownership and expected positions, a column's first-free name) are one atomic
//! step, as a database transaction would make them.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use sluice_engine::commit::CommitStage;
use sluice_engine::component::{
    ColumnAssignment, ColumnDef, ColumnRequest, ProposeTable, TableDef,
};
use sluice_engine::ownership::Claim;
use sluice_engine::{EngineError, TypeClass};

use super::{CatalogTable, Manifest, NewPartition, Partition, SourcePosition, TableStorage};

/// A column as the log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRec {
    pub ordinal: u32,
    pub name: String,
    /// `string`, `number`, `boolean` or `timestamp`.
    pub class: String,
    /// The raw property; `None` for system columns and the overflow column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflow: bool,
    pub created_at: String,
}

impl ColumnRec {
    fn def(&self) -> ColumnDef {
        ColumnDef {
            ordinal: self.ordinal,
            name: self.name.clone(),
            class: TypeClass::parse(&self.class).unwrap_or(TypeClass::String),
            source: self.source.clone(),
        }
    }
}

/// A position a commit advances: every offset below `next_offset` is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRec {
    pub source: String,
    pub partition: String,
    /// The committed position the epoch started from: the commit is refused unless the state
    /// still holds it.
    pub expected: u64,
    pub next_offset: u64,
}

/// A partition a commit registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRec {
    pub table: i64,
    pub value: String,
    pub location: String,
}

/// One change to the state. Ids (tables, manifests, partition numbers) are given by the
/// writer as the next free one of the state it decided against, and checked again on apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    Table {
        id: i64,
        database: String,
        name: String,
        #[serde(default)]
        source_event: Option<String>,
        location: String,
        format: String,
        columns: Vec<ColumnRec>,
    },
    Columns {
        table: i64,
        columns: Vec<ColumnRec>,
    },
    PartitionNumber {
        source: String,
        partition: String,
        number: i64,
    },
    Claim {
        sink: String,
        worker: String,
        source: String,
        partitions: Vec<String>,
    },
    Begin {
        id: i64,
        sink: String,
        worker: String,
        partitions: Vec<(String, String)>,
    },
    Plan {
        manifest: i64,
        objects: Vec<String>,
    },
    Stage {
        manifest: i64,
        stage: String,
    },
    Finish {
        manifest: i64,
        sink: String,
        worker: String,
        partitions: Vec<PartitionRec>,
        positions: Vec<PositionRec>,
    },
    Abandon {
        manifest: i64,
    },
}

/// A table with its columns and the indexes that find them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TableRec {
    pub id: i64,
    pub database: String,
    pub name: String,
    #[serde(default)]
    pub source_event: Option<String>,
    pub location: String,
    pub format: String,
    /// Bumped by every operation that adds columns.
    pub version: i64,
    pub created_at: String,
    pub columns: Vec<ColumnRec>,
    /// (raw property, class) -> ordinal.
    #[serde(skip)]
    by_source: HashMap<(String, TypeClass), u32>,
    /// Raw property -> the ordinal of its first column.
    #[serde(skip)]
    first_of: HashMap<String, u32>,
    #[serde(skip)]
    names: HashSet<String>,
    #[serde(skip)]
    overflow: Option<u32>,
}

impl TableRec {
    fn index(&mut self, c: &ColumnRec) {
        if let Some(s) = &c.source {
            let class = TypeClass::parse(&c.class).unwrap_or(TypeClass::String);
            self.by_source.insert((s.clone(), class), c.ordinal);
            self.first_of.entry(s.clone()).or_insert(c.ordinal);
        }
        if c.overflow && self.overflow.is_none() {
            self.overflow = Some(c.ordinal);
        }
        self.names.insert(c.name.clone());
    }

    fn reindex(&mut self) {
        self.by_source.clear();
        self.first_of.clear();
        self.names.clear();
        self.overflow = None;
        let columns = std::mem::take(&mut self.columns);
        for c in &columns {
            self.index(c);
        }
        self.columns = columns;
    }

    pub fn def(&self) -> TableDef {
        TableDef {
            id: self.id,
            name: self.name.clone(),
            source_event: self.source_event.clone(),
            columns: self.columns.iter().map(ColumnRec::def).collect(),
        }
    }

    fn catalog_table(&self) -> CatalogTable {
        CatalogTable {
            def: self.def(),
            location: self.location.clone(),
            format: self.format.clone(),
        }
    }
}

/// An unfinished commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRec {
    pub id: i64,
    pub sink: String,
    pub worker: String,
    pub stage: String,
    pub objects: Vec<String>,
    pub partitions: Vec<(String, String)>,
    pub created_at: String,
}

/// Who may commit a source partition for a sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub worker: String,
    pub generation: u64,
    pub claimed_at: String,
}

/// sink -> source -> partition -> value.
type PerPartition<V> = BTreeMap<String, BTreeMap<String, BTreeMap<String, V>>>;

fn at<'a, V>(m: &'a PerPartition<V>, sink: &str, source: &str, partition: &str) -> Option<&'a V> {
    m.get(sink)?.get(source)?.get(partition)
}

fn at_mut<'a, V>(
    m: &'a mut PerPartition<V>,
    sink: &str,
    source: &str,
    partition: &str,
) -> Option<&'a mut V> {
    m.get_mut(sink)?.get_mut(source)?.get_mut(partition)
}

fn put<V>(m: &mut PerPartition<V>, sink: &str, source: &str, partition: &str, v: V) {
    m.entry(sink.to_string())
        .or_default()
        .entry(source.to_string())
        .or_default()
        .insert(partition.to_string(), v);
}

/// Why an operation cannot apply to a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another worker owns a partition, or committed it since the epoch started, or resolved
    /// the commit: the commit must be dropped.
    Fenced(String),
    /// The operation does not fit the state (an id already given, a name taken): the writer
    /// decided against another state, which cannot happen when it decided at the head.
    Stale(String),
}

impl Refusal {
    pub fn into_error(self) -> EngineError {
        match self {
            Refusal::Fenced(why) => EngineError::Fenced(why),
            Refusal::Stale(why) => EngineError::Internal(format!("commit state: {why}")),
        }
    }
}

/// The whole state at sequence number `seq`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The last operation folded in (0: none).
    pub seq: u64,
    pub tables: BTreeMap<i64, TableRec>,
    pub next_table: i64,
    /// source -> partition -> number.
    pub numbers: BTreeMap<String, BTreeMap<String, i64>>,
    pub next_number: i64,
    /// Unfinished manifests; done and abandoned ones are dropped.
    pub manifests: BTreeMap<i64, ManifestRec>,
    pub next_manifest: i64,
    pub owners: PerPartition<Owner>,
    pub positions: PerPartition<u64>,
    /// table -> `mp_date` value -> location.
    pub partitions: BTreeMap<i64, BTreeMap<String, String>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            seq: 0,
            tables: BTreeMap::new(),
            next_table: 1,
            numbers: BTreeMap::new(),
            next_number: 1,
            manifests: BTreeMap::new(),
            next_manifest: 1,
            owners: BTreeMap::new(),
            positions: BTreeMap::new(),
            partitions: BTreeMap::new(),
        }
    }
}

/// What a decision asks for: an answer from the state as it is, or an operation to write
/// and the answer it gives once written.
pub enum Step<R> {
    Answer(R),
    Write(Op, R),
}

impl State {
    /// Rebuilds the indexes a deserialized state lacks.
    pub fn reindex(&mut self) {
        for t in self.tables.values_mut() {
            t.reindex();
        }
    }

    /// Whether `op` applies to this state, and if not, why.
    pub fn check(&self, op: &Op) -> Result<(), Refusal> {
        let stale = |why: String| Err(Refusal::Stale(why));
        match op {
            Op::Claim { .. } | Op::Abandon { .. } => Ok(()),
            Op::Table {
                id,
                database,
                name,
                source_event,
                columns,
                ..
            } => {
                if *id != self.next_table {
                    return stale(format!(
                        "table id {id} is not the next ({})",
                        self.next_table
                    ));
                }
                let clash = self.tables.values().any(|t| {
                    t.database == *database
                        && (t.name == *name
                            || (source_event.is_some() && t.source_event == *source_event))
                });
                if clash {
                    return stale(format!("table `{name}` exists in `{database}`"));
                }
                if columns
                    .iter()
                    .enumerate()
                    .any(|(i, c)| c.ordinal != i as u32)
                {
                    return stale(format!("table `{name}`: system columns out of order"));
                }
                Ok(())
            }
            Op::Columns { table, columns } => {
                let Some(t) = self.tables.get(table) else {
                    return stale(format!("no table {table}"));
                };
                let mut names = HashSet::new();
                let mut keys = HashSet::new();
                let mut overflow = t.overflow.is_some();
                for (i, c) in columns.iter().enumerate() {
                    if c.ordinal as usize != t.columns.len() + i {
                        return stale(format!("column {} out of order in table {table}", c.name));
                    }
                    if t.names.contains(&c.name) || !names.insert(c.name.as_str()) {
                        return stale(format!("column {} exists in table {table}", c.name));
                    }
                    if let Some(s) = &c.source {
                        let class = TypeClass::parse(&c.class).unwrap_or(TypeClass::String);
                        if t.by_source.contains_key(&(s.clone(), class))
                            || !keys.insert((s.as_str(), class))
                        {
                            return stale(format!("property {s} has a {class:?} column already"));
                        }
                    }
                    if c.overflow {
                        if overflow {
                            return stale(format!("table {table} has an overflow column"));
                        }
                        overflow = true;
                    }
                }
                Ok(())
            }
            Op::PartitionNumber {
                source,
                partition,
                number,
            } => {
                if *number != self.next_number {
                    return stale(format!("partition number {number} is not the next"));
                }
                if self.number(source, partition).is_some() {
                    return stale(format!("partition {partition} of {source} has a number"));
                }
                Ok(())
            }
            Op::Begin { id, .. } => {
                if *id != self.next_manifest {
                    return stale(format!("manifest id {id} is not the next"));
                }
                Ok(())
            }
            Op::Plan { manifest, .. } | Op::Stage { manifest, .. } => {
                let Some(m) = self.manifests.get(manifest) else {
                    return Err(Refusal::Fenced(format!(
                        "commit {manifest} was resolved by the partitions' new owner"
                    )));
                };
                // Once another worker has claimed one of its partitions, the commit is that
                // worker's to resolve, from what it recorded at the claim: nothing more may be
                // added to it, so its files never outlive its resolution.
                for (source, partition) in &m.partitions {
                    if let Some(o) = at(&self.owners, &m.sink, source, partition) {
                        if o.worker != m.worker {
                            return Err(Refusal::Fenced(format!(
                                "partition {partition} of `{source}` now belongs to worker {}",
                                o.worker
                            )));
                        }
                    }
                }
                Ok(())
            }
            Op::Finish {
                manifest,
                sink,
                worker,
                positions,
                ..
            } => {
                if !self.manifests.contains_key(manifest) {
                    return Err(Refusal::Fenced(format!(
                        "commit {manifest} was resolved by the partitions' new owner"
                    )));
                }
                for p in positions {
                    if let Some(o) = at(&self.owners, sink, &p.source, &p.partition) {
                        if o.worker != *worker {
                            return Err(Refusal::Fenced(format!(
                                "partition {} of `{}` now belongs to worker {}",
                                p.partition, p.source, o.worker
                            )));
                        }
                    }
                    let current = self.position(sink, &p.source, &p.partition).unwrap_or(0);
                    if current != p.expected {
                        return Err(Refusal::Fenced(format!(
                            "partition {} of `{}` was committed up to {current} since this \
                             epoch started from {}",
                            p.partition, p.source, p.expected
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// Folds `op`, written at `seq`, into the state. An operation that does not apply (see
    /// [`Self::check`]) changes nothing but the sequence number, for every reader alike.
    pub fn apply(&mut self, seq: u64, op: &Op, at_time: &str) -> Result<(), Refusal> {
        self.seq = seq;
        self.check(op)?;
        match op {
            Op::Table {
                id,
                database,
                name,
                source_event,
                location,
                format,
                columns,
            } => {
                let mut t = TableRec {
                    id: *id,
                    database: database.clone(),
                    name: name.clone(),
                    source_event: source_event.clone(),
                    location: location.clone(),
                    format: format.clone(),
                    version: 1,
                    created_at: at_time.to_string(),
                    columns: columns.clone(),
                    ..TableRec::default()
                };
                t.reindex();
                self.tables.insert(*id, t);
                self.next_table = id + 1;
            }
            Op::Columns { table, columns } => {
                if let Some(t) = self.tables.get_mut(table) {
                    for c in columns {
                        t.index(c);
                        t.columns.push(c.clone());
                    }
                    t.version += 1;
                }
            }
            Op::PartitionNumber {
                source,
                partition,
                number,
            } => {
                self.numbers
                    .entry(source.clone())
                    .or_default()
                    .insert(partition.clone(), *number);
                self.next_number = number + 1;
            }
            Op::Claim {
                sink,
                worker,
                source,
                partitions,
            } => {
                for p in partitions {
                    match at_mut(&mut self.owners, sink, source, p) {
                        Some(o) if o.worker == *worker => {}
                        Some(o) => {
                            o.worker = worker.clone();
                            o.generation += 1;
                            o.claimed_at = at_time.to_string();
                        }
                        None => put(
                            &mut self.owners,
                            sink,
                            source,
                            p,
                            Owner {
                                worker: worker.clone(),
                                generation: 1,
                                claimed_at: at_time.to_string(),
                            },
                        ),
                    }
                }
            }
            Op::Begin {
                id,
                sink,
                worker,
                partitions,
            } => {
                self.manifests.insert(
                    *id,
                    ManifestRec {
                        id: *id,
                        sink: sink.clone(),
                        worker: worker.clone(),
                        stage: CommitStage::Planned.as_str().to_string(),
                        objects: Vec::new(),
                        partitions: partitions.clone(),
                        created_at: at_time.to_string(),
                    },
                );
                self.next_manifest = id + 1;
            }
            Op::Plan { manifest, objects } => {
                if let Some(m) = self.manifests.get_mut(manifest) {
                    m.objects = objects.clone();
                }
            }
            Op::Stage { manifest, stage } => {
                if let Some(m) = self.manifests.get_mut(manifest) {
                    m.stage = stage.clone();
                }
            }
            Op::Finish {
                manifest,
                sink,
                partitions,
                positions,
                ..
            } => {
                for p in partitions {
                    self.partitions
                        .entry(p.table)
                        .or_default()
                        .insert(p.value.clone(), p.location.clone());
                }
                for p in positions {
                    put(
                        &mut self.positions,
                        sink,
                        &p.source,
                        &p.partition,
                        p.next_offset,
                    );
                }
                self.manifests.remove(manifest);
            }
            Op::Abandon { manifest } => {
                self.manifests.remove(manifest);
            }
        }
        Ok(())
    }

    pub fn number(&self, source: &str, partition: &str) -> Option<i64> {
        self.numbers.get(source)?.get(partition).copied()
    }

    pub fn position(&self, sink: &str, source: &str, partition: &str) -> Option<u64> {
        at(&self.positions, sink, source, partition).copied()
    }

    fn table_rec(&self, table: i64) -> Result<&TableRec, EngineError> {
        self.tables
            .get(&table)
            .ok_or_else(|| EngineError::Internal(format!("no table {table} in the commit state")))
    }

    // ---- Decisions: what to answer, or what to write, given the state at the head. ----

    /// Same contract as [`super::Catalog::table`].
    #[allow(clippy::too_many_arguments)]
    pub fn decide_table(
        &self,
        database: &str,
        storage_for: &dyn Fn(&str) -> TableStorage,
        source_event: Option<&str>,
        fixed_name: Option<&str>,
        system: &[(&str, TypeClass)],
        propose: ProposeTable<'_>,
        now: &str,
    ) -> Step<TableDef> {
        let found = self.tables.values().find(|t| {
            t.database == database
                && match (source_event, fixed_name) {
                    (Some(ev), _) => t.source_event.as_deref() == Some(ev),
                    (None, Some(n)) => t.source_event.is_none() && t.name == n,
                    (None, None) => false,
                }
        });
        if let Some(t) = found {
            return Step::Answer(t.def());
        }
        let name = match fixed_name {
            Some(n) => n.to_string(),
            None => propose(&|n| {
                self.tables
                    .values()
                    .any(|t| t.database == database && t.name == n)
            }),
        };
        let storage = storage_for(&name);
        let columns: Vec<ColumnRec> = system
            .iter()
            .enumerate()
            .map(|(i, (n, class))| ColumnRec {
                ordinal: i as u32,
                name: n.to_string(),
                class: class.as_str().to_string(),
                source: None,
                overflow: false,
                created_at: now.to_string(),
            })
            .collect();
        let def = TableDef {
            id: self.next_table,
            name: name.clone(),
            source_event: source_event.map(str::to_string),
            columns: columns.iter().map(ColumnRec::def).collect(),
        };
        Step::Write(
            Op::Table {
                id: self.next_table,
                database: database.to_string(),
                name,
                source_event: source_event.map(str::to_string),
                location: storage.location,
                format: storage.format,
                columns,
            },
            def,
        )
    }

    /// Same contract as [`super::Catalog::columns`]: the same decisions, in the same order, as
    /// one call per column would make.
    pub fn decide_columns(
        &self,
        table: i64,
        wanted: &[ColumnRequest<'_>],
        max_columns: u32,
        now: &str,
    ) -> Result<Step<Vec<ColumnAssignment>>, EngineError> {
        let t = self.table_rec(table)?;
        let mut out = Vec::with_capacity(wanted.len());
        // The columns this call makes, found as the table's own are.
        let mut made: Vec<ColumnRec> = Vec::new();
        let mut made_by_source: HashMap<(&str, TypeClass), usize> = HashMap::new();
        let mut made_names: HashSet<String> = HashSet::new();
        let mut made_overflow: Option<usize> = None;
        for w in wanted {
            let key = (w.raw.to_string(), w.class);
            if let Some(o) = t.by_source.get(&key) {
                out.push(ColumnAssignment::Column(t.columns[*o as usize].def()));
                continue;
            }
            if let Some(i) = made_by_source.get(&(w.raw, w.class)) {
                out.push(ColumnAssignment::Column(made[*i].def()));
                continue;
            }
            let ordinal = (t.columns.len() + made.len()) as u32;
            if ordinal >= max_columns {
                if let Some(o) = t.overflow {
                    out.push(ColumnAssignment::Overflow(t.columns[o as usize].def()));
                    continue;
                }
                if let Some(i) = made_overflow {
                    out.push(ColumnAssignment::Overflow(made[i].def()));
                    continue;
                }
                let c = ColumnRec {
                    ordinal,
                    name: "mp_properties".into(),
                    class: TypeClass::String.as_str().into(),
                    source: None,
                    overflow: true,
                    created_at: now.to_string(),
                };
                out.push(ColumnAssignment::Overflow(c.def()));
                made_overflow = Some(made.len());
                made_names.insert(c.name.clone());
                made.push(c);
                continue;
            }
            let first = match t.first_of.get(w.raw) {
                Some(o) => Some(t.columns[*o as usize].name.clone()),
                None => made
                    .iter()
                    .find(|c| c.source.as_deref() == Some(w.raw))
                    .map(|c| c.name.clone()),
            };
            let taken = |n: &str| t.names.contains(n) || made_names.contains(n);
            let name = (w.propose)(first.as_deref(), &taken);
            let c = ColumnRec {
                ordinal,
                name,
                class: w.class.as_str().to_string(),
                source: Some(w.raw.to_string()),
                overflow: false,
                created_at: now.to_string(),
            };
            out.push(ColumnAssignment::Column(c.def()));
            made_by_source.insert((w.raw, w.class), made.len());
            made_names.insert(c.name.clone());
            made.push(c);
        }
        Ok(if made.is_empty() {
            Step::Answer(out)
        } else {
            Step::Write(
                Op::Columns {
                    table,
                    columns: made,
                },
                out,
            )
        })
    }

    pub fn decide_number(&self, source: &str, partition: &str) -> Step<i64> {
        match self.number(source, partition) {
            Some(n) => Step::Answer(n),
            None => Step::Write(
                Op::PartitionNumber {
                    source: source.to_string(),
                    partition: partition.to_string(),
                    number: self.next_number,
                },
                self.next_number,
            ),
        }
    }

    /// Same contract as [`super::Catalog::claim`]; always written, so that the claim has a
    /// place in the order of commits.
    pub fn decide_claim(
        &self,
        sink: &str,
        worker: &str,
        source: &str,
        partitions: &[String],
    ) -> Step<(HashMap<String, Claim>, Vec<Manifest>)> {
        let mut claims = HashMap::new();
        for p in partitions {
            let continued = at(&self.owners, sink, source, p).is_some_and(|o| o.worker == worker);
            claims.insert(
                p.clone(),
                Claim {
                    next_offset: self.position(sink, source, p),
                    continued,
                },
            );
        }
        let orphans = self
            .unfinished(sink)
            .into_iter()
            .filter(|m| {
                m.worker != worker
                    && (m.partitions.is_empty()
                        || m.partitions
                            .iter()
                            .any(|(s, p)| s == source && partitions.contains(p)))
            })
            .collect();
        Step::Write(
            Op::Claim {
                sink: sink.to_string(),
                worker: worker.to_string(),
                source: source.to_string(),
                partitions: partitions.to_vec(),
            },
            (claims, orphans),
        )
    }

    pub fn decide_begin(
        &self,
        sink: &str,
        worker: &str,
        partitions: &[(String, String)],
    ) -> Step<i64> {
        Step::Write(
            Op::Begin {
                id: self.next_manifest,
                sink: sink.to_string(),
                worker: worker.to_string(),
                partitions: partitions.to_vec(),
            },
            self.next_manifest,
        )
    }

    /// A change to a commit in progress; refused (fenced) once the commit was resolved by
    /// another worker, so that a worker that lost its partitions never makes files visible
    /// for a commit nobody will finish.
    pub fn decide_manifest_change(&self, op: Op) -> Result<Step<()>, Refusal> {
        self.check(&op)?;
        Ok(Step::Write(op, ()))
    }

    pub fn decide_finish(
        &self,
        manifest: i64,
        sink: &str,
        worker: &str,
        partitions: &[NewPartition],
        positions: &[SourcePosition],
    ) -> Result<Step<()>, Refusal> {
        let op = Op::Finish {
            manifest,
            sink: sink.to_string(),
            worker: worker.to_string(),
            partitions: partitions
                .iter()
                .map(|p| PartitionRec {
                    table: p.table_id,
                    value: p.value.clone(),
                    location: p.location.clone(),
                })
                .collect(),
            positions: positions
                .iter()
                .map(|p| PositionRec {
                    source: p.source.clone(),
                    partition: p.partition.clone(),
                    expected: p.expected,
                    next_offset: p.next_offset,
                })
                .collect(),
        };
        self.check(&op)?;
        Ok(Step::Write(op, ()))
    }

    pub fn decide_abandon(&self, manifest: i64) -> Step<()> {
        if self.manifests.contains_key(&manifest) {
            Step::Write(Op::Abandon { manifest }, ())
        } else {
            Step::Answer(())
        }
    }

    // ---- Reads. ----

    pub fn tables_of(&self, database: &str) -> Vec<CatalogTable> {
        let mut out: Vec<CatalogTable> = self
            .tables
            .values()
            .filter(|t| t.database == database)
            .map(TableRec::catalog_table)
            .collect();
        out.sort_by(|a, b| a.def.name.cmp(&b.def.name));
        out
    }

    pub fn partitions_of(&self, table: i64) -> Vec<Partition> {
        self.partitions
            .get(&table)
            .map(|m| {
                m.iter()
                    .map(|(value, location)| Partition {
                        value: value.clone(),
                        location: location.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn table_def(&self, table: i64) -> Result<TableDef, EngineError> {
        Ok(self.table_rec(table)?.def())
    }

    pub fn columns_from(&self, table: i64, from: u32) -> Result<Vec<ColumnDef>, EngineError> {
        Ok(self
            .table_rec(table)?
            .columns
            .iter()
            .skip(from as usize)
            .map(ColumnRec::def)
            .collect())
    }

    pub fn unfinished(&self, sink: &str) -> Vec<Manifest> {
        self.manifests
            .values()
            .filter(|m| m.sink == sink)
            .map(|m| Manifest {
                id: m.id,
                stage: CommitStage::parse(&m.stage).unwrap_or(CommitStage::Planned),
                objects: m.objects.clone(),
                worker: m.worker.clone(),
                partitions: m.partitions.clone(),
            })
            .collect()
    }

    pub fn schema_version(&self, database: &str) -> i64 {
        self.tables
            .values()
            .filter(|t| t.database == database)
            .map(|t| t.version + 1)
            .sum()
    }

    pub fn positions_of(&self, sink: &str) -> HashMap<(String, String), u64> {
        let mut out = HashMap::new();
        if let Some(by_source) = self.positions.get(sink) {
            for (source, parts) in by_source {
                for (p, next) in parts {
                    out.insert((source.clone(), p.clone()), *next);
                }
            }
        }
        out
    }

    /// The name-mapping document of SPEC §11, as the local catalog makes it.
    pub fn name_mapping(&self, database: &str) -> serde_json::Value {
        let columns = self.tables_of(database).into_iter().map(|t| t.def.id);
        let mut rows = Vec::new();
        for id in columns {
            if let Some(t) = self.tables.get(&id) {
                for c in &t.columns {
                    rows.push(super::MappingRow {
                        table: &t.name,
                        source_event: t.source_event.as_deref(),
                        column: &c.name,
                        source: c.source.as_deref(),
                        class: &c.class,
                        overflow: c.overflow,
                        created_at: &c.created_at,
                    });
                }
            }
        }
        super::name_mapping_of(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write<R>(s: &mut State, decide: impl FnOnce(&State) -> Step<R>) -> R {
        match decide(s) {
            Step::Answer(r) => r,
            Step::Write(op, r) => {
                let seq = s.seq + 1;
                s.apply(seq, &op, "t").unwrap();
                r
            }
        }
    }

    #[test]
    fn a_state_folded_from_its_log_equals_the_state_restored_from_its_snapshot() {
        let mut s = State::default();
        let storage = |n: &str| TableStorage {
            location: format!("s3://b/1/{n}/"),
            format: "parquet".into(),
        };
        let t = write(&mut s, |s| {
            s.decide_table(
                "db",
                &storage,
                None,
                Some("mp_master_event"),
                &[("time", TypeClass::Timestamp)],
                &|_| "mp_master_event".into(),
                "t",
            )
        });
        let propose = |_: Option<&str>, taken: &dyn Fn(&str) -> bool| {
            (0..).map(|i| format!("c{i}")).find(|n| !taken(n)).unwrap()
        };
        let wanted = [ColumnRequest {
            raw: "a",
            class: TypeClass::Number,
            propose: &propose,
        }];
        let step = s.decide_columns(t.id, &wanted, 100, "t").unwrap();
        write(&mut s, |_| step);
        let n = write(&mut s, |s| s.decide_number("src", "p0"));
        assert_eq!(n, 1);
        write(&mut s, |s| {
            s.decide_claim("sink", "A", "src", &["p0".into()])
        });
        let m = write(&mut s, |s| {
            s.decide_begin("sink", "A", &[("src".into(), "p0".into())])
        });
        let step = s
            .decide_finish(
                m,
                "sink",
                "A",
                &[NewPartition {
                    table_id: t.id,
                    value: "2024-01-02".into(),
                    location: "s3://b/1/mp_master_event/2024/01/02/".into(),
                }],
                &[SourcePosition {
                    source: "src".into(),
                    partition: "p0".into(),
                    expected: 0,
                    next_offset: 42,
                }],
            )
            .unwrap();
        write(&mut s, |_| step);
        let text = serde_json::to_string(&s).unwrap();
        let mut back: State = serde_json::from_str(&text).unwrap();
        back.reindex();
        assert_eq!(back.seq, s.seq);
        assert_eq!(back.table_def(t.id).unwrap(), s.table_def(t.id).unwrap());
        assert_eq!(back.positions_of("sink"), s.positions_of("sink"));
        assert_eq!(back.partitions_of(t.id), s.partitions_of(t.id));
        assert_eq!(back.name_mapping("db"), s.name_mapping("db"));
        assert!(back.unfinished("sink").is_empty());
        // The indexes came back too: the same column is found, not made again.
        let step = back.decide_columns(t.id, &wanted, 100, "t").unwrap();
        assert!(matches!(step, Step::Answer(_)));
    }

    #[test]
    fn an_operation_that_does_not_fit_changes_nothing_for_any_reader() {
        let mut s = State::default();
        write(&mut s, |s| {
            s.decide_claim("sink", "A", "src", &["p0".into()])
        });
        let m = write(&mut s, |s| {
            s.decide_begin("sink", "A", &[("src".into(), "p0".into())])
        });
        // B claims p0, and a finish decided by A before that arrives after it.
        let a_finish = Op::Finish {
            manifest: m,
            sink: "sink".into(),
            worker: "A".into(),
            partitions: vec![],
            positions: vec![PositionRec {
                source: "src".into(),
                partition: "p0".into(),
                expected: 0,
                next_offset: 10,
            }],
        };
        write(&mut s, |s| {
            s.decide_claim("sink", "B", "src", &["p0".into()])
        });
        let seq = s.seq + 1;
        let got = s.apply(seq, &a_finish, "t");
        assert!(matches!(got, Err(Refusal::Fenced(_))), "{got:?}");
        assert_eq!(s.seq, seq);
        assert_eq!(s.position("sink", "src", "p0"), None);
        assert_eq!(s.unfinished("sink").len(), 1);
        // A reused id is refused the same way.
        let again = Op::Begin {
            id: m,
            sink: "sink".into(),
            worker: "B".into(),
            partitions: vec![],
        };
        assert!(matches!(s.check(&again), Err(Refusal::Stale(_))));
    }
}
