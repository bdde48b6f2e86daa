//! `type-infer`: gives every (table, property, type class) its column, once, durably
//! (SPEC §4, §6, §12 D6, D7, D14).
//!
//! Resolution runs in input order on one thread (the first committed type owns the base name),
//! and costs a registry call only the first time a (table, name, class) is seen: afterwards a
//! pointer-keyed cache answers.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::{Batch, NameRef, TableRef, TypeClass};
use sluice_engine::component::{ColumnAssignment, Operator, SchemaRegistry};
use sluice_engine::registry::{BuildContext, Capability, Component, Issue};
use sluice_engine::{EngineError, Result};

use crate::naming::{conflict_candidate, first_free};

/// The single table of monoschema mode.
pub const MASTER_TABLE: &str = "mp_master_event";
/// Names taken in every table before any property (§12 D7) besides the system columns.
pub const RESERVED_COLUMNS: &[&str] = &[
    "time",
    "distinct_id",
    "mp_date",
    "mp_properties",
    "mp_event_name",
];

/// One table for all events, or one per event name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMode {
    /// Every event goes to `mp_master_event`, with an `mp_event_name` column.
    #[default]
    Monoschema,
    /// One table per cleaned event name.
    Multischema,
}

/// Assigns each event its table and each property its column, creating columns in the
/// dataset's catalog before any file uses them. A property that arrives with a second type gets
/// a `<name>_<type>` column; past `max_columns` new properties go into `mp_properties`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeInferConfig {
    /// `monoschema` (default) or `multischema`.
    #[serde(default)]
    pub schema: SchemaMode,
    /// Column limit per table (SPEC §4.5).
    #[serde(default = "default_max_columns")]
    pub max_columns: u32,
}

fn default_max_columns() -> u32 {
    9500
}

impl Component for TypeInferConfig {
    fn validate(&self) -> Vec<Issue> {
        if self.max_columns < 8 {
            return vec![Issue::at(
                "max_columns",
                format!(
                    "max_columns {} leaves no room for properties",
                    self.max_columns
                ),
                "use the default, 9500, or at least 8",
            )];
        }
        vec![]
    }
    fn requires(&self) -> &'static [Capability] {
        &[Capability::CleanNames]
    }
    fn provides(&self) -> &'static [Capability] {
        &[Capability::Columns]
    }
    fn needs_schema_registry(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        match self.schema {
            SchemaMode::Monoschema => "monoschema: mp_master_event".into(),
            SchemaMode::Multischema => "multischema: one table per event".into(),
        }
    }
    fn build_operator(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        let registry = cx.schema_registry.clone().ok_or_else(|| {
            EngineError::config(
                format!("`{}` has no schema registry", cx.name),
                "feed it into a parquet sink",
            )
        })?;
        Ok(Box::new(TypeInfer::new(
            registry,
            self.schema,
            self.max_columns,
        )))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

type ColumnKey = (i64, usize, TypeClass);

pub struct TypeInfer {
    registry: Arc<dyn SchemaRegistry>,
    mode: SchemaMode,
    max_columns: u32,
    master: Option<Arc<TableRef>>,
    /// By event-name pointer; the NameRef keeps the pointer valid.
    tables: HashMap<usize, (NameRef, Arc<TableRef>)>,
    tables_by_raw: HashMap<String, Arc<TableRef>>,
    columns: HashMap<ColumnKey, (NameRef, u32, bool)>,
    columns_by_raw: HashMap<(i64, String, TypeClass), (u32, bool)>,
}

impl TypeInfer {
    pub fn new(registry: Arc<dyn SchemaRegistry>, mode: SchemaMode, max_columns: u32) -> Self {
        TypeInfer {
            registry,
            mode,
            max_columns,
            master: None,
            tables: HashMap::new(),
            tables_by_raw: HashMap::new(),
            columns: HashMap::new(),
            columns_by_raw: HashMap::new(),
        }
    }

    fn table_for(&mut self, name: &NameRef) -> Result<Arc<TableRef>> {
        match self.mode {
            SchemaMode::Monoschema => {
                if let Some(t) = &self.master {
                    return Ok(t.clone());
                }
                let def = self.registry.table(
                    None,
                    Some(MASTER_TABLE),
                    &[
                        ("mp_event_name", TypeClass::String),
                        ("time", TypeClass::Timestamp),
                        ("distinct_id", TypeClass::String),
                    ],
                    &|_| MASTER_TABLE.to_string(),
                )?;
                let t = Arc::new(TableRef {
                    id: def.id,
                    name: def.name,
                });
                self.master = Some(t.clone());
                Ok(t)
            }
            SchemaMode::Multischema => {
                let ptr = Arc::as_ptr(name) as usize;
                if let Some((_, t)) = self.tables.get(&ptr) {
                    return Ok(t.clone());
                }
                let t = match self.tables_by_raw.get(name.raw()) {
                    Some(t) => t.clone(),
                    None => {
                        let clean = name.clean().ok_or_else(|| {
                            EngineError::Internal("type-infer before clean-name".into())
                        })?;
                        let def = self.registry.table(
                            Some(name.raw()),
                            None,
                            &[
                                ("time", TypeClass::Timestamp),
                                ("distinct_id", TypeClass::String),
                            ],
                            &|taken| first_free(clean, taken),
                        )?;
                        let t = Arc::new(TableRef {
                            id: def.id,
                            name: def.name,
                        });
                        self.tables_by_raw.insert(name.raw().to_string(), t.clone());
                        t
                    }
                };
                self.tables.insert(ptr, (name.clone(), t.clone()));
                Ok(t)
            }
        }
    }

    fn column_for(&mut self, table: i64, name: &NameRef, class: TypeClass) -> Result<(u32, bool)> {
        let key = (table, Arc::as_ptr(name) as usize, class);
        if let Some((_, col, of)) = self.columns.get(&key) {
            return Ok((*col, *of));
        }
        let raw_key = (table, name.raw().to_string(), class);
        let found = match self.columns_by_raw.get(&raw_key) {
            Some(v) => *v,
            None => {
                let clean = name
                    .clean()
                    .ok_or_else(|| EngineError::Internal("type-infer before clean-name".into()))?;
                let propose = |first: Option<&str>, taken: &dyn Fn(&str) -> bool| {
                    let base = match first {
                        Some(f) => conflict_candidate(f, class),
                        None => clean.to_string(),
                    };
                    first_free(&base, &|n| taken(n) || RESERVED_COLUMNS.contains(&n))
                };
                let v = match self.registry.column(
                    table,
                    name.raw(),
                    class,
                    self.max_columns,
                    &propose,
                )? {
                    ColumnAssignment::Column(c) => (c.ordinal, false),
                    ColumnAssignment::Overflow(c) => (c.ordinal, true),
                };
                self.columns_by_raw.insert(raw_key, v);
                v
            }
        };
        self.columns.insert(key, (name.clone(), found.0, found.1));
        Ok(found)
    }
}

impl Operator for TypeInfer {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        let mut events = std::mem::take(&mut batch.events);
        for e in &mut events {
            let table = self.table_for(&e.name)?;
            for p in &mut e.props {
                let Some(class) = p.value.class() else {
                    continue;
                };
                let (col, overflow) = self.column_for(table.id, &p.name, class)?;
                p.column = col;
                p.overflow = overflow;
            }
            e.table = Some(table);
        }
        batch.events = events;
        Ok(())
    }
}
