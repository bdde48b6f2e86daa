//! `sluice query`: SQL over a dataset's catalog and object store, with DataFusion.
//!
//! Each catalog table becomes a [`LakeTable`]: its columns come from the catalog (files written
//! before a column existed read it as NULL), its `mp_date` partitions from the catalog's
//! partition list, and filters on `mp_date` prune partitions before any file is listed, as
//! Athena does with Glue partitions.
//!
//! With Glue, tables, columns and partitions are Glue's, as Athena reads them: the query sees
//! what readers see. Files in S3 are fetched (only those of the partitions the query keeps)
//! and read from memory.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use sluice_engine::{EngineError, Result};

use crate::catalog::{Catalog, CatalogTable, Partition, Publisher};
use crate::lake::arrow_schema;
use crate::store::ObjectStore;

/// The partition column.
pub const PARTITION_COLUMN: &str = "mp_date";

/// Where a table's partitions are listed.
pub enum PartitionList {
    /// Asked from the catalog at each scan.
    Catalog(Arc<dyn Catalog>),
    /// Read beforehand (from Glue).
    Listed(Vec<Partition>),
}

/// How files are read: in place on the local disk, or fetched from the store into memory.
#[derive(Clone)]
enum Files {
    Local,
    Fetched {
        memory: Arc<InMemory>,
        url: ObjectStoreUrl,
    },
}

/// A catalog table as DataFusion sees it.
pub struct LakeTable {
    table: CatalogTable,
    file_schema: SchemaRef,
    schema: SchemaRef,
    partitions: PartitionList,
    store: Arc<dyn ObjectStore>,
    base_url: String,
    files: Files,
}

impl fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LakeTable({})", self.table.def.name)
    }
}

impl LakeTable {
    fn new(
        table: CatalogTable,
        partitions: PartitionList,
        store: Arc<dyn ObjectStore>,
        files: Files,
    ) -> Self {
        let file_schema = arrow_schema(&table.def);
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(PARTITION_COLUMN, DataType::Utf8, false));
        let base_url = store.url("");
        LakeTable {
            table,
            file_schema,
            schema: Arc::new(Schema::new(fields)),
            partitions,
            store,
            base_url,
            files,
        }
    }

    /// The store key of a location URL.
    fn key_of(&self, location: &str) -> Option<String> {
        location.strip_prefix(&self.base_url).map(str::to_string)
    }
}

fn only_partition_column(e: &Expr) -> bool {
    let cols = e.column_refs();
    !cols.is_empty() && cols.iter().all(|c| c.name == PARTITION_COLUMN)
}

fn df_err(e: EngineError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if only_partition_column(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.table.format != "parquet" {
            return Err(DataFusionError::NotImplemented(format!(
                "table {} is written as {}; sluice query reads Parquet tables (DuckDB, Athena or Spark read JSON ones)",
                self.table.def.name, self.table.format
            )));
        }
        let mut partitions = match &self.partitions {
            PartitionList::Catalog(c) => {
                off_runtime(|| c.partitions(self.table.def.id)).map_err(df_err)?
            }
            PartitionList::Listed(l) => l.clone(),
        };
        let pruning: Vec<Expr> = filters
            .iter()
            .filter(|f| only_partition_column(f))
            .cloned()
            .collect();
        if let (Some(pred), false) = (conjunction(pruning), partitions.is_empty()) {
            let pschema = Arc::new(Schema::new(vec![Field::new(
                PARTITION_COLUMN,
                DataType::Utf8,
                false,
            )]));
            let values = StringArray::from(
                partitions
                    .iter()
                    .map(|p| p.value.clone())
                    .collect::<Vec<_>>(),
            );
            let batch = RecordBatch::try_new(pschema.clone(), vec![Arc::new(values)])?;
            let dfs = DFSchema::try_from(pschema.as_ref().clone())?;
            let phys = state.create_physical_expr(pred, &dfs)?;
            let keep = phys.evaluate(&batch)?.into_array(batch.num_rows())?;
            let keep = keep
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| {
                    DataFusionError::Internal("partition filter is not boolean".into())
                })?;
            let mut i = 0;
            partitions.retain(|_| {
                let k = keep.is_valid(i) && keep.value(i);
                i += 1;
                k
            });
        }
        tracing::debug!(table = %self.table.def.name, partitions = partitions.len(), "scanning");
        let mut files = Vec::new();
        for p in &partitions {
            let Some(key) = self.key_of(&p.location) else {
                return Err(DataFusionError::Plan(format!(
                    "partition {} of {} is at {}, outside the store {}",
                    p.value, self.table.def.name, p.location, self.base_url
                )));
            };
            for (k, size) in off_runtime(|| self.store.list(&key)).map_err(df_err)? {
                if !k.ends_with(".parquet") {
                    continue;
                }
                let path = match &self.files {
                    Files::Local => self
                        .store
                        .url(&k)
                        .trim_start_matches("file://")
                        .trim_start_matches('/')
                        .to_string(),
                    Files::Fetched { memory, .. } => {
                        let bytes = off_runtime(|| self.store.get(&k)).map_err(df_err)?;
                        memory
                            .put(&ObjectPath::from(k.as_str()), PutPayload::from(bytes))
                            .await
                            .map_err(|e| DataFusionError::External(Box::new(e)))?;
                        k.clone()
                    }
                };
                files.push(PartitionedFile::new(path, size).with_partition_values(vec![
                    datafusion::scalar::ScalarValue::Utf8(Some(p.value.clone())),
                ]));
            }
        }
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(vec![Arc::new(Field::new(
                PARTITION_COLUMN,
                DataType::Utf8,
                false,
            ))])
            .build();
        let source = Arc::new(ParquetSource::new(table_schema));
        let target = state.config().target_partitions().max(1);
        let groups: Vec<FileGroup> = {
            let mut g: Vec<Vec<PartitionedFile>> = vec![Vec::new(); target.min(files.len())];
            let n = g.len();
            for (i, f) in files.into_iter().enumerate() {
                g[i % n].push(f);
            }
            g.into_iter().map(FileGroup::new).collect()
        };
        let store_url = match &self.files {
            Files::Local => ObjectStoreUrl::local_filesystem(),
            Files::Fetched { url, .. } => url.clone(),
        };
        let config = FileScanConfigBuilder::new(store_url, source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// Output formats of `sluice query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// Runs a blocking store or catalog call on a thread of its own: the S3 and Glue clients
/// block on their own runtime, which cannot happen on one of the query's threads.
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(EngineError::Internal("a store call panicked".into())))
    })
}

/// Runs `sql` over every table of the dataset and renders the result. With `published`
/// (Glue), tables and partitions are the published ones; otherwise the catalog's.
///
/// # Errors
/// SQL errors, with the tables that exist when a table is unknown.
pub fn run_sql(
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    published: Option<Arc<dyn Publisher>>,
    database: &str,
    sql: &str,
    format: OutputFormat,
) -> Result<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| EngineError::external("starting the query runtime", e))?;
    rt.block_on(async move {
        // `SHOW TABLES` and `information_schema` list the dataset's tables.
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_information_schema(true),
        );
        let base = store.url("");
        let files = if base.starts_with("file://") {
            Files::Local
        } else {
            // `s3://bucket/`: files of the scanned partitions are fetched into memory.
            let root = base.trim_end_matches('/');
            let url = ObjectStoreUrl::parse(root)
                .map_err(|e| EngineError::Internal(format!("store URL {root}: {e}")))?;
            let memory = Arc::new(InMemory::new());
            ctx.register_object_store(url.as_ref(), memory.clone());
            Files::Fetched { memory, url }
        };
        let tables: Vec<(CatalogTable, PartitionList)> = match &published {
            Some(p) => off_runtime(|| p.read_tables())?
                .into_iter()
                .map(|(t, parts)| (t, PartitionList::Listed(parts)))
                .collect(),
            None => off_runtime(|| catalog.tables(database))?
                .into_iter()
                .map(|t| (t, PartitionList::Catalog(catalog.clone())))
                .collect(),
        };
        let names: Vec<String> = tables.iter().map(|t| t.0.def.name.clone()).collect();
        for (t, parts) in tables {
            let name = t.def.name.clone();
            ctx.register_table(
                &name,
                Arc::new(LakeTable::new(t, parts, store.clone(), files.clone())),
            )
            .map_err(|e| EngineError::Internal(format!("registering {name}: {e}")))?;
        }
        let plan_err = |e: DataFusionError| {
            let mut msg = e.to_string();
            if msg.contains("not found") {
                msg.push_str(&format!(
                    "\n    help: tables in `{database}`: {}",
                    if names.is_empty() {
                        "none yet (run the topology first)".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            }
            EngineError::Data(format!("query failed: {msg}"))
        };
        let df = ctx.sql(sql).await.map_err(plan_err)?;
        let batches = df.collect().await.map_err(plan_err)?;
        render(&batches, format)
    })
}

fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    let fail =
        |e: arrow::error::ArrowError| EngineError::Internal(format!("rendering results: {e}"));
    match format {
        OutputFormat::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)
            .map_err(fail)?
            .to_string()),
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b).map_err(fail)?;
                }
            }
            String::from_utf8(buf).map_err(|e| EngineError::Internal(e.to_string()))
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in batches {
                    w.write(b).map_err(fail)?;
                }
                w.finish().map_err(fail)?;
            }
            String::from_utf8(buf).map_err(|e| EngineError::Internal(e.to_string()))
        }
    }
}
