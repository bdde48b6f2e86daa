//! Catalogs: databases, tables with typed columns, partitions with their locations, and the
//! commit protocol's manifests and positions. The local one is an embedded SQLite database
//! that several processes on one machine can share; the log one keeps the same state as a log
//! of conditional writes in the object store itself, so that workers on any machines share it.
//! Glue is published to beside either (`Publisher`).

#[cfg(test)]
mod contract;
mod local;
mod log;
mod registry;
pub mod state;

pub use local::LocalCatalog;
pub use log::LogCatalog;
pub use registry::DatasetRegistry;

use std::collections::HashMap;

use sluice_engine::commit::CommitStage;
use sluice_engine::component::{
    ColumnAssignment, ColumnDef, ColumnRequest, ProposeColumn, ProposeTable, TableDef,
};
use sluice_engine::ownership::Claim;
use sluice_engine::{Result, TypeClass};

/// A table with where its files live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogTable {
    pub def: TableDef,
    /// URL of the table's folder.
    pub location: String,
    /// `parquet` or `json`.
    pub format: String,
}

/// Where and how a new table's files are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStorage {
    /// URL of the table's folder.
    pub location: String,
    /// `parquet` or `json`.
    pub format: String,
}

/// A partition (`mp_date` value) and its folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub value: String,
    pub location: String,
}

/// A manifest of the commit protocol (see `sluice_engine::commit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub id: i64,
    pub stage: CommitStage,
    pub objects: Vec<String>,
    /// The worker that started it.
    pub worker: String,
    /// The source partitions, as (source, partition), whose positions it commits.
    pub partitions: Vec<(String, String)>,
}

/// A partition to register when a commit finishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPartition {
    pub table_id: i64,
    pub value: String,
    pub location: String,
}

/// A committed position: every offset below `next_offset` of `(source, partition)` is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePosition {
    pub source: String,
    pub partition: String,
    /// The committed position the epoch started from (0 when none): the commit is refused
    /// unless the catalog still holds it, so an epoch read before someone else committed the
    /// partition can never commit it twice.
    pub expected: u64,
    pub next_offset: u64,
}

/// A catalog that query engines read (Glue): the sink publishes a table's columns before
/// writing files that use them, and its partitions after their files are written.
pub trait Publisher: Send + Sync {
    /// Creates the table, or appends the columns it lacks.
    fn publish_table(&self, table: &CatalogTable) -> Result<()>;
    /// Registers `(mp_date value, location)` partitions; existing ones are kept (or updated
    /// when their location changed).
    fn publish_partitions(&self, table: &CatalogTable, parts: &[(String, String)]) -> Result<()>;
    /// The tables as published (names, columns, formats, locations) and their partitions:
    /// what query engines reading this catalog see.
    fn read_tables(&self) -> Result<Vec<(CatalogTable, Vec<Partition>)>>;
}

/// Everything the sink and `sluice query` need from a catalog.
pub trait Catalog: Send + Sync {
    /// Fails with a clear error if the database is missing (Glue) or creates it (local).
    fn ensure_database(&self, database: &str) -> Result<()>;
    fn tables(&self, database: &str) -> Result<Vec<CatalogTable>>;
    fn partitions(&self, table_id: i64) -> Result<Vec<Partition>>;

    /// Same contract as [`sluice_engine::component::SchemaRegistry::table`].
    fn table(
        &self,
        database: &str,
        storage_for: &dyn Fn(&str) -> TableStorage,
        source_event: Option<&str>,
        fixed_name: Option<&str>,
        system: &[(&str, TypeClass)],
        propose: ProposeTable<'_>,
    ) -> Result<TableDef>;
    /// Same contract as [`sluice_engine::component::SchemaRegistry::column`]: one column
    /// asked of [`Self::columns`].
    fn column(
        &self,
        table: i64,
        raw: &str,
        class: TypeClass,
        max_columns: u32,
        propose: ProposeColumn<'_>,
    ) -> Result<ColumnAssignment> {
        let wanted = [ColumnRequest {
            raw,
            class,
            propose,
        }];
        self.columns(table, &wanted, max_columns)?
            .pop()
            .ok_or_else(|| sluice_engine::EngineError::Internal("no column assigned".into()))
    }
    /// Same contract as [`sluice_engine::component::SchemaRegistry::columns`].
    fn columns(
        &self,
        table: i64,
        wanted: &[ColumnRequest<'_>],
        max_columns: u32,
    ) -> Result<Vec<ColumnAssignment>>;
    fn table_def(&self, table: i64) -> Result<TableDef>;
    /// The columns of `table` from ordinal `from` on, in order: what a holder of the first
    /// `from` lacks (columns are only ever appended).
    fn columns_from(&self, table: i64, from: u32) -> Result<Vec<ColumnDef>>;

    /// A stable small number for a source partition (used in object keys).
    fn partition_number(&self, source: &str, partition: &str) -> Result<i64>;
    /// Makes `worker` the owner of `partitions` of `source` for `sink` (see
    /// `sluice_engine::ownership`), and returns what is committed for each, with the unfinished
    /// manifests of other workers that touch them: no commit of theirs can finish any more, so
    /// the caller resolves them.
    fn claim(
        &self,
        sink: &str,
        worker: &str,
        source: &str,
        partitions: &[String],
    ) -> Result<(HashMap<String, Claim>, Vec<Manifest>)>;
    /// Starts a commit: a manifest in stage `planned`, whose id names the objects.
    fn begin_commit(
        &self,
        sink: &str,
        worker: &str,
        partitions: &[(String, String)],
    ) -> Result<i64>;
    /// Records the objects the commit will write, before writing any.
    fn plan_objects(&self, manifest: i64, objects: &[String]) -> Result<()>;
    fn set_stage(&self, manifest: i64, stage: CommitStage) -> Result<()>;
    /// Registers partitions and positions and marks the manifest done, in one transaction.
    /// Fails with [`sluice_engine::EngineError::Fenced`], changing nothing, if another worker
    /// owns one of the partitions of `positions`.
    fn finish_commit(
        &self,
        manifest: i64,
        sink: &str,
        worker: &str,
        partitions: &[NewPartition],
        positions: &[SourcePosition],
    ) -> Result<()>;
    /// Manifests of `sink` that are not done.
    fn unfinished(&self, sink: &str) -> Result<Vec<Manifest>>;
    /// Marks a rolled-back manifest as such.
    fn abandon(&self, manifest: i64) -> Result<()>;
    /// A number that changes whenever a table or column of `database` is added.
    fn schema_version(&self, database: &str) -> Result<i64>;
    /// The name-mapping document of SPEC §11 for `database`.
    fn name_mapping(&self, database: &str) -> Result<serde_json::Value>;
    /// Committed positions of `sink`, by (source, partition).
    fn positions(&self, sink: &str) -> Result<HashMap<(String, String), u64>>;
}

/// One column of the name-mapping document (SPEC §11), in table-name then ordinal order.
pub(crate) struct MappingRow<'a> {
    pub table: &'a str,
    pub source_event: Option<&'a str>,
    pub column: &'a str,
    pub source: Option<&'a str>,
    pub class: &'a str,
    pub overflow: bool,
    pub created_at: &'a str,
}

/// The name-mapping document of SPEC §11 from its columns.
pub(crate) fn name_mapping_of<'a>(
    rows: impl IntoIterator<Item = MappingRow<'a>>,
) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut tables = Map::new();
    for r in rows {
        let t = tables
            .entry(r.table.to_string())
            .or_insert_with(|| json!({"source_event": r.source_event, "columns": {}}));
        // System columns map to the fields they come from.
        let source = match (r.source, r.column, r.overflow) {
            (Some(s), _, _) => Value::String(s.to_string()),
            (None, _, true) => Value::Null,
            (None, "mp_event_name", _) => Value::String("event".into()),
            (None, other, _) => Value::String(other.to_string()),
        };
        if let Some(cols) = t["columns"].as_object_mut() {
            cols.insert(
                r.column.to_string(),
                json!({"source": source, "type": r.class, "created_at": r.created_at}),
            );
        }
    }
    json!({ "tables": tables })
}
