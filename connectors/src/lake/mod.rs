//! The windowed lake sink (Parquet or JSON files): rows buffered per (table, `mp_date`) window, files rolled on size
//! and age, and each epoch committed with its objects, catalog partitions and source positions
//! as one unit.

mod chunk;
mod config;
mod file;
mod sink;
mod window;

pub use config::{
    CatalogConfig, Compression, DataFormat, ParquetSinkConfig, RollConfig, StoreConfig,
};
pub use sink::LakeSink;
pub use window::{arrow_schema, Window};
