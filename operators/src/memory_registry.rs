//! A schema registry held in memory: for one process that needs no durability (tests,
//! benchmarks, dry runs). It follows the same contract as the catalog-backed one: the first
//! assignment wins and never changes.

use std::sync::Mutex;

use sluice_engine::component::{
    ColumnAssignment, ColumnDef, ProposeColumn, ProposeTable, SchemaRegistry, TableDef,
};
use sluice_engine::{EngineError, Result, TypeClass};

#[derive(Default)]
pub struct MemoryRegistry {
    tables: Mutex<Vec<TableDef>>,
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every table, in creation order.
    pub fn tables(&self) -> Vec<TableDef> {
        self.tables.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<TableDef>>> {
        self.tables
            .lock()
            .map_err(|_| EngineError::Internal("registry lock poisoned".into()))
    }
}

impl SchemaRegistry for MemoryRegistry {
    fn table(
        &self,
        source_event: Option<&str>,
        fixed_name: Option<&str>,
        system: &[(&str, TypeClass)],
        propose: ProposeTable<'_>,
    ) -> Result<TableDef> {
        let mut tables = self.lock()?;
        let found = tables.iter().find(|t| match (source_event, fixed_name) {
            (Some(ev), _) => t.source_event.as_deref() == Some(ev),
            (None, Some(n)) => t.source_event.is_none() && t.name == n,
            (None, None) => false,
        });
        if let Some(t) = found {
            return Ok(t.clone());
        }
        let name = match fixed_name {
            Some(n) => n.to_string(),
            None => propose(&|n| tables.iter().any(|t| t.name == n)),
        };
        let def = TableDef {
            id: tables.len() as i64 + 1,
            name,
            source_event: source_event.map(str::to_string),
            columns: system
                .iter()
                .enumerate()
                .map(|(i, (n, c))| ColumnDef {
                    ordinal: i as u32,
                    name: n.to_string(),
                    class: *c,
                    source: None,
                })
                .collect(),
        };
        tables.push(def.clone());
        Ok(def)
    }

    fn column(
        &self,
        table: i64,
        raw: &str,
        class: TypeClass,
        max_columns: u32,
        propose: ProposeColumn<'_>,
    ) -> Result<ColumnAssignment> {
        let mut tables = self.lock()?;
        let t = tables
            .iter_mut()
            .find(|t| t.id == table)
            .ok_or_else(|| EngineError::Internal(format!("no table {table}")))?;
        if let Some(c) = t
            .columns
            .iter()
            .find(|c| c.source.as_deref() == Some(raw) && c.class == class)
        {
            return Ok(ColumnAssignment::Column(c.clone()));
        }
        let ordinal = t.columns.len() as u32;
        if ordinal >= max_columns {
            if let Some(c) = t
                .columns
                .iter()
                .find(|c| c.source.is_none() && c.name == "mp_properties")
            {
                return Ok(ColumnAssignment::Overflow(c.clone()));
            }
            let c = ColumnDef {
                ordinal,
                name: "mp_properties".into(),
                class: TypeClass::String,
                source: None,
            };
            t.columns.push(c.clone());
            return Ok(ColumnAssignment::Overflow(c));
        }
        let first = t
            .columns
            .iter()
            .find(|c| c.source.as_deref() == Some(raw))
            .map(|c| c.name.clone());
        let name = propose(first.as_deref(), &|n| t.columns.iter().any(|c| c.name == n));
        let c = ColumnDef {
            ordinal,
            name,
            class,
            source: Some(raw.to_string()),
        };
        t.columns.push(c.clone());
        Ok(ColumnAssignment::Column(c))
    }

    fn table_def(&self, table: i64) -> Result<TableDef> {
        self.lock()?
            .iter()
            .find(|t| t.id == table)
            .cloned()
            .ok_or_else(|| EngineError::Internal(format!("no table {table}")))
    }
}
