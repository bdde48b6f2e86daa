//! The schema registry of one dataset (a catalog database and the store folder of its
//! tables), over any [`Catalog`].

use std::sync::Arc;

use sluice_engine::component::{
    ColumnAssignment, ProposeColumn, ProposeTable, SchemaRegistry, TableDef,
};
use sluice_engine::{Result, TypeClass};

use super::Catalog;

pub struct DatasetRegistry {
    pub catalog: Arc<dyn Catalog>,
    pub database: String,
    /// URL of the dataset's folder (ends with `/`); a table's location is this plus its name.
    pub base_url: String,
}

impl SchemaRegistry for DatasetRegistry {
    fn table(
        &self,
        source_event: Option<&str>,
        fixed_name: Option<&str>,
        system: &[(&str, TypeClass)],
        propose: ProposeTable<'_>,
    ) -> Result<TableDef> {
        let base = self.base_url.clone();
        self.catalog.table(
            &self.database,
            &|name| format!("{base}{name}/"),
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

    fn table_def(&self, table: i64) -> Result<TableDef> {
        self.catalog.table_def(table)
    }
}
