//! The schema registry of one dataset (a catalog database and the store folder of its
//! tables), over any [`Catalog`].

use std::sync::Arc;

use sluice_engine::component::{
    ColumnAssignment, ColumnRequest, ProposeColumn, ProposeTable, SchemaRegistry, TableDef,
};
use sluice_engine::{Result, TypeClass};

use super::{Catalog, TableStorage};

pub struct DatasetRegistry {
    pub catalog: Arc<dyn Catalog>,
    pub database: String,
    /// URL of the dataset's folder (ends with `/`); a table's location is this plus its name.
    pub base_url: String,
    /// `parquet` or `json`: how the dataset's files are written.
    pub format: String,
}

impl SchemaRegistry for DatasetRegistry {
    fn table(
        &self,
        source_event: Option<&str>,
        fixed_name: Option<&str>,
        system: &[(&str, TypeClass)],
        propose: ProposeTable<'_>,
    ) -> Result<TableDef> {
        let storage_for = |name: &str| TableStorage {
            location: format!("{}{name}/", self.base_url),
            format: self.format.clone(),
        };
        self.catalog.table(
            &self.database,
            &storage_for,
            source_event,
            fixed_name,
            system,
            propose,
        )
    }

    fn column(
        &self,
        table: i64,
        raw: &str,
        class: TypeClass,
        max_columns: u32,
        propose: ProposeColumn<'_>,
    ) -> Result<ColumnAssignment> {
        self.catalog.column(table, raw, class, max_columns, propose)
    }

    fn columns(
        &self,
        table: i64,
        wanted: &[ColumnRequest<'_>],
        max_columns: u32,
    ) -> Result<Vec<ColumnAssignment>> {
        self.catalog.columns(table, wanted, max_columns)
    }

    fn table_def(&self, table: i64) -> Result<TableDef> {
        self.catalog.table_def(table)
    }
}
