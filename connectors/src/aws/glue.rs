//! Glue as the published catalog (SPEC §8): tables with the TableInput of §8.4, columns only
//! ever appended, `mp_date` partitions created in chunks of 100 ("already exists" is success)
//! and updated when their location changes. Only the actions of §8.1 are called.

use aws_sdk_glue::types::{Column, PartitionInput, SerDeInfo, StorageDescriptor, TableInput};
use aws_sdk_glue::Client;

use sluice_engine::batch::TypeClass;
use sluice_engine::{EngineError, Result};

use super::{runtime, sdk_config, Access};
use crate::catalog::{CatalogTable, Partition, Publisher};
use sluice_engine::component::{ColumnDef, TableDef};

pub struct GluePublisher {
    client: Client,
    database: String,
    table_prefix: String,
}

fn glue_err(what: String, e: impl std::fmt::Display) -> EngineError {
    EngineError::external(what, e.to_string())
}

impl GluePublisher {
    /// Connects and checks that the database exists (it is the customer's to create).
    pub fn open(database: &str, access: &Access, table_prefix: &str) -> Result<Self> {
        let sdk = sdk_config(access, "Glue")?;
        let region = &access.region;
        let client = Client::new(&sdk);
        runtime()?
            .block_on(client.get_database().name(database).send())
            .map_err(|e| {
                let detail = e
                    .as_service_error()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string());
                EngineError::config(
                    format!("Glue database `{database}` in {region}: {detail}"),
                    "create the database in the bucket's region (sluice never creates it), and grant glue:GetDatabase",
                )
            })?;
        Ok(GluePublisher {
            client,
            database: database.to_string(),
            table_prefix: table_prefix.to_string(),
        })
    }

    fn name(&self, t: &CatalogTable) -> String {
        format!("{}{}", self.table_prefix, t.def.name)
    }
}

/// The storage descriptor of SPEC §8.4 for a table or one of its partitions.
fn descriptor(t: &CatalogTable, location: &str, with_columns: bool) -> StorageDescriptor {
    let json = t.format == "json";
    let (input, output, serde) = if json {
        (
            "org.apache.hadoop.mapred.TextInputFormat",
            "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "org.openx.data.jsonserde.JsonSerDe",
        )
    } else {
        (
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        )
    };
    let mut sd = StorageDescriptor::builder()
        .location(location)
        .input_format(input)
        .output_format(output)
        .serde_info(SerDeInfo::builder().serialization_library(serde).build());
    if with_columns {
        for c in &t.def.columns {
            // JSON files keep `time` as integer epoch seconds (SPEC §12 D2, D9).
            let ty = if json && c.class == TypeClass::Timestamp {
                "bigint"
            } else {
                c.class.glue_type()
            };
            if let Ok(col) = Column::builder().name(&c.name).r#type(ty).build() {
                sd = sd.columns(col);
            }
        }
    }
    sd.build()
}

impl Publisher for GluePublisher {
    fn publish_table(&self, t: &CatalogTable) -> Result<()> {
        let rt = runtime()?;
        let name = self.name(t);
        let input = TableInput::builder()
            .name(&name)
            .table_type("EXTERNAL_TABLE")
            .parameters(
                "classification",
                if t.format == "json" {
                    "json"
                } else {
                    "parquet"
                },
            )
            .parameters("EXTERNAL", "TRUE")
            .partition_keys(
                Column::builder()
                    .name("mp_date")
                    .r#type("string")
                    .build()
                    .map_err(|e| EngineError::Internal(e.to_string()))?,
            )
            .storage_descriptor(descriptor(t, &t.location, true))
            .build()
            .map_err(|e| EngineError::Internal(format!("Glue table input: {e}")))?;
        for _ in 0..5 {
            let got = rt.block_on(
                self.client
                    .get_table()
                    .database_name(&self.database)
                    .name(&name)
                    .send(),
            );
            match got {
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_entity_not_found_exception()) =>
                {
                    match rt.block_on(
                        self.client
                            .create_table()
                            .database_name(&self.database)
                            .table_input(input.clone())
                            .send(),
                    ) {
                        Ok(_) => return Ok(()),
                        // Another worker created it: compare again.
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|s| s.is_already_exists_exception()) =>
                        {
                            continue
                        }
                        Err(e) => return Err(glue_err(format!("Glue CreateTable {name}"), e)),
                    }
                }
                Err(e) => return Err(glue_err(format!("Glue GetTable {name}"), e)),
                Ok(out) => {
                    let have: Vec<String> = out
                        .table()
                        .and_then(|t| t.storage_descriptor())
                        .map(|sd| sd.columns().iter().map(|c| c.name().to_string()).collect())
                        .unwrap_or_default();
                    let want: Vec<&str> = t.def.columns.iter().map(|c| c.name.as_str()).collect();
                    if want.iter().all(|w| have.iter().any(|h| h == w)) {
                        return Ok(());
                    }
                    // Append-only: the registry's columns are a superset of what Glue has.
                    let version = out.table().and_then(|t| t.version_id()).map(str::to_string);
                    match rt.block_on(
                        self.client
                            .update_table()
                            .database_name(&self.database)
                            .table_input(input.clone())
                            .set_version_id(version)
                            .send(),
                    ) {
                        Ok(_) => return Ok(()),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|s| s.is_concurrent_modification_exception()) =>
                        {
                            continue
                        }
                        Err(e) => return Err(glue_err(format!("Glue UpdateTable {name}"), e)),
                    }
                }
            }
        }
        Err(EngineError::external(
            format!("Glue table {name}"),
            "it kept changing under concurrent updates".to_string(),
        ))
    }

    fn read_tables(&self) -> Result<Vec<(CatalogTable, Vec<Partition>)>> {
        let rt = runtime()?;
        let fail = |what: &str, e: String| {
            EngineError::external(format!("Glue {what} in {}", self.database), e)
        };
        let mut glue_tables = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = rt
                .block_on(
                    self.client
                        .get_tables()
                        .database_name(&self.database)
                        .set_next_token(token.take())
                        .send(),
                )
                .map_err(|e| fail("GetTables", e.to_string()))?;
            glue_tables.extend(page.table_list().iter().cloned());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut out = Vec::new();
        for (i, t) in glue_tables.into_iter().enumerate() {
            let name = t.name().to_string();
            let Some(sd) = t.storage_descriptor() else {
                continue;
            };
            if !name.starts_with(&self.table_prefix) {
                continue;
            }
            let columns = sd
                .columns()
                .iter()
                .enumerate()
                .map(|(n, c)| ColumnDef {
                    ordinal: n as u32,
                    name: c.name().to_string(),
                    class: match c.r#type().unwrap_or("string") {
                        "double" => TypeClass::Number,
                        "boolean" => TypeClass::Boolean,
                        "timestamp" | "bigint" if c.name() == "time" => TypeClass::Timestamp,
                        _ => TypeClass::String,
                    },
                    source: None,
                })
                .collect();
            let format = t
                .parameters()
                .and_then(|p| p.get("classification"))
                .cloned()
                .unwrap_or_else(|| "parquet".into());
            let table = CatalogTable {
                def: TableDef {
                    id: i as i64,
                    name: name.clone(),
                    source_event: None,
                    columns,
                },
                location: sd.location().unwrap_or_default().to_string(),
                format,
            };
            let mut parts = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = rt
                    .block_on(
                        self.client
                            .get_partitions()
                            .database_name(&self.database)
                            .table_name(&name)
                            .set_next_token(token.take())
                            .send(),
                    )
                    .map_err(|e| fail(&format!("GetPartitions of {name}"), e.to_string()))?;
                for p in page.partitions() {
                    if let (Some(v), Some(loc)) = (
                        p.values().first(),
                        p.storage_descriptor().and_then(|d| d.location()),
                    ) {
                        parts.push(Partition {
                            value: v.clone(),
                            location: loc.to_string(),
                        });
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => break,
                }
            }
            parts.sort_by(|a, b| a.value.cmp(&b.value));
            out.push((table, parts));
        }
        Ok(out)
    }

    fn publish_partitions(&self, t: &CatalogTable, parts: &[(String, String)]) -> Result<()> {
        let rt = runtime()?;
        let name = self.name(t);
        for chunk in parts.chunks(100) {
            let inputs: Vec<PartitionInput> = chunk
                .iter()
                .map(|(value, location)| {
                    PartitionInput::builder()
                        .values(value)
                        .storage_descriptor(descriptor(t, location, true))
                        .build()
                })
                .collect();
            let out = rt
                .block_on(
                    self.client
                        .batch_create_partition()
                        .database_name(&self.database)
                        .table_name(&name)
                        .set_partition_input_list(Some(inputs))
                        .send(),
                )
                .map_err(|e| glue_err(format!("Glue BatchCreatePartition {name}"), e))?;
            for err in out.errors() {
                let code = err
                    .error_detail()
                    .and_then(|d| d.error_code())
                    .unwrap_or_default();
                let value = err.partition_values().first().cloned().unwrap_or_default();
                if code != "AlreadyExistsException" {
                    return Err(EngineError::external(
                        format!("Glue BatchCreatePartition {name} mp_date={value}"),
                        format!(
                            "{code}: {}",
                            err.error_detail()
                                .and_then(|d| d.error_message())
                                .unwrap_or_default()
                        ),
                    ));
                }
                // It exists: refresh it if it points elsewhere.
                let Some((_, location)) = chunk.iter().find(|(v, _)| *v == value) else {
                    continue;
                };
                let current = rt
                    .block_on(
                        self.client
                            .get_partition()
                            .database_name(&self.database)
                            .table_name(&name)
                            .partition_values(&value)
                            .send(),
                    )
                    .map_err(|e| glue_err(format!("Glue GetPartition {name} {value}"), e))?;
                let at = current
                    .partition()
                    .and_then(|p| p.storage_descriptor())
                    .and_then(|sd| sd.location())
                    .unwrap_or_default();
                if at != location {
                    rt.block_on(
                        self.client
                            .update_partition()
                            .database_name(&self.database)
                            .table_name(&name)
                            .partition_value_list(&value)
                            .partition_input(
                                PartitionInput::builder()
                                    .values(&value)
                                    .storage_descriptor(descriptor(t, location, true))
                                    .build(),
                            )
                            .send(),
                    )
                    .map_err(|e| glue_err(format!("Glue UpdatePartition {name} {value}"), e))?;
                }
            }
        }
        Ok(())
    }
}
