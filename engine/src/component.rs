//! The traits a source, an operator and a sink implement, and the schema registry they share.

use std::sync::Arc;
use std::time::Instant;

use crate::batch::{Batch, TypeClass};
use crate::error::Result;
use crate::ownership::{Coordinator, Ownership, Rewind};
use crate::runtime::Partitions;
use crate::stats::RunStats;

/// Transforms batches in place.
///
/// Implementors must keep every event they do not drop, move events that cannot be processed
/// into `batch.dead` with a reason, and count events dropped on purpose in `batch.filtered`:
/// rows + dead letters + filtered always equals the lines read. They must not touch
/// `batch.progress`.
pub trait Operator: Send {
    /// Processes one batch.
    ///
    /// # Errors
    /// Only for failures that stop the pipeline (a schema registry that cannot be reached);
    /// bad data goes to dead letters instead.
    fn process(&mut self, batch: &mut Batch) -> Result<()>;

    /// A copy of this operator for another worker thread, for operators whose output for a batch
    /// depends on that batch alone. `None` (the default) keeps the operator on one thread, in
    /// input order.
    fn fork(&self) -> Option<Box<dyn Operator>> {
        None
    }
}

/// What a source needs at start.
pub struct SourceContext {
    pub name: String,
    pub partitions: Arc<Partitions>,
    /// Claims partitions in the sinks this source feeds and tells where to start reading.
    pub coordinator: Arc<Coordinator>,
    pub stats: Arc<RunStats>,
    /// Stop once every assigned partition has reached the end it had when the run started
    /// (unbounded sources); bounded sources end anyway.
    pub until_caught_up: bool,
}

/// Reads raw lines in batches.
pub trait Source: Send {
    /// Prepares reading from the committed positions.
    fn open(&mut self, cx: &SourceContext) -> Result<()>;
    /// The next batch of at most `max_lines` raw lines, with `progress` set; `None` at the end
    /// of a bounded input.
    fn next_batch(&mut self, max_lines: usize) -> Result<Option<Batch>>;
    /// The run is over (its input ended or it was stopped): release what the source holds,
    /// such as a group membership. Called after the source's output is closed.
    fn close(&mut self) {}
    /// Whether [`Source::next_batch`] never waits: not for input yet to come (a pipe, a
    /// broker), nor on a sink (a group's rebalance). Such a source may be read on its sink's
    /// thread, between writes, when the whole chain runs there.
    fn never_waits(&self) -> bool {
        false
    }
}

/// What a sink needs at start.
pub struct SinkContext {
    pub name: String,
    pub partitions: Arc<Partitions>,
    pub stats: Arc<RunStats>,
    /// Fenced sinks ask for a rewind here; batches of older generations are to be dropped.
    pub rewind: Arc<Rewind>,
}

/// Buffers what it receives and commits it durably, deciding itself when.
///
/// A sink owns its exactly-once guarantee: it records, with each commit, up to which offset of
/// each partition its output is complete, and drops events at positions it already committed.
pub trait Sink: Send {
    /// Recovers from an interrupted commit, if any.
    fn open(&mut self, cx: &SinkContext) -> Result<()>;
    /// Partition ownership in this sink's catalog, shared with the sources that feed it.
    fn ownership(&self) -> Arc<dyn Ownership>;
    fn write(&mut self, batch: Batch) -> Result<()>;
    /// Called at least every [`Sink::poll_interval`] even without data: rolls on age happen here.
    fn poll(&mut self, now: Instant) -> Result<()>;
    fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(200)
    }
    /// The process is near its memory budget: commit what is held now, if anything.
    fn relieve_memory(&mut self) -> Result<()> {
        Ok(())
    }
    /// The input ended (or the run is stopping): commit everything held.
    fn finish(&mut self) -> Result<()>;
}

/// A column as the schema registry assigned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    pub ordinal: u32,
    pub name: String,
    pub class: TypeClass,
    /// The original property name; `None` for system columns.
    pub source: Option<String>,
}

/// A table and its columns, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    pub id: i64,
    pub name: String,
    /// The original event name of a multischema table; `None` for `mp_master_event`.
    pub source_event: Option<String>,
    pub columns: Vec<ColumnDef>,
}

/// The result of asking for a property's column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnAssignment {
    Column(ColumnDef),
    /// The table is at its column limit: the value goes into this overflow column.
    Overflow(ColumnDef),
}

/// Picks a name given a test for names already taken in the namespace.
pub type ProposeTable<'a> = &'a dyn Fn(&dyn Fn(&str) -> bool) -> String;
/// Picks a column name given the name of the column the same raw property got with its first
/// type class (if any) and a test for names already taken.
pub type ProposeColumn<'a> = &'a dyn Fn(Option<&str>, &dyn Fn(&str) -> bool) -> String;

/// One column asked of [`SchemaRegistry::columns`].
#[derive(Clone, Copy)]
pub struct ColumnRequest<'a> {
    pub raw: &'a str,
    pub class: TypeClass,
    pub propose: ProposeColumn<'a>,
}

/// Durable assignment of tables and columns, shared by every worker of a dataset.
///
/// Implementations must make each assignment atomically and durably, so that the first
/// committed assignment wins and two workers never disagree (SPEC §4.3, §12 D14); a name once
/// given never changes.
pub trait SchemaRegistry: Send + Sync {
    /// The table for `source_event` (multischema) or the single monoschema table (`None`),
    /// creating it with `system` columns first if needed.
    fn table(
        &self,
        source_event: Option<&str>,
        fixed_name: Option<&str>,
        system: &[(&str, TypeClass)],
        propose: ProposeTable<'_>,
    ) -> Result<TableDef>;

    /// The column for (`raw`, `class`) in `table`, creating it if needed. Past `max_columns`
    /// columns, new properties overflow.
    fn column(
        &self,
        table: i64,
        raw: &str,
        class: TypeClass,
        max_columns: u32,
        propose: ProposeColumn<'_>,
    ) -> Result<ColumnAssignment>;

    /// The columns for `wanted` in `table`, in order: the same as asking [`Self::column`]
    /// for each in turn (collisions are numbered and the column limit reached in that order),
    /// but a durable registry makes them all in one transaction. A batch of events with
    /// thousands of new properties then costs one commit, not one per property.
    fn columns(
        &self,
        table: i64,
        wanted: &[ColumnRequest<'_>],
        max_columns: u32,
    ) -> Result<Vec<ColumnAssignment>> {
        wanted
            .iter()
            .map(|w| self.column(table, w.raw, w.class, max_columns, w.propose))
            .collect()
    }

    /// The table's current definition.
    fn table_def(&self, table: i64) -> Result<TableDef>;
}
