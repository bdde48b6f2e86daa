//! A data file being written: row groups are encoded as a window fills and go to the object
//! store as they are produced (parts of a multipart upload on S3), so a large file is never one
//! buffer. The object becomes visible only when the commit completes it.

use std::io::Write;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnDescPtr;

use sluice_engine::{EngineError, Result};

use super::config::Compression;
use super::window::Rows;
use super::DataFormat;
use crate::store::{ObjectStore, Upload, UploadWriter};

enum Encoder {
    Parquet(ParquetFile),
    Json(flate2::write::GzEncoder<UploadWriter>),
}

/// A Parquet file, driven a row group and a column at a time.
struct ParquetFile {
    writer: SerializedFileWriter<UploadWriter>,
    /// Whether each column's chunks go through a dictionary (chosen on the first row group).
    dictionary: Vec<bool>,
    /// Each column's descriptor (the schema is flat: a field is a leaf).
    leaves: Vec<ColumnDescPtr>,
    codec: PqCompression,
    row_groups: usize,
}

/// One file of a window, open for more row groups.
pub struct OpenFile {
    pub key: String,
    /// Columns of its schema: rows with more need a new file.
    pub columns: usize,
    pub rows: usize,
    /// Estimated bytes of the values written (before encoding), as windows count them.
    pub value_bytes: u64,
    encoder: Encoder,
}

/// A file whose encoding is finished, waiting for the commit to make it visible.
pub struct ClosedFile {
    pub key: String,
    pub upload: Box<dyn Upload>,
    pub rows: usize,
    pub bytes: u64,
}

fn internal(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
}

impl OpenFile {
    /// Starts the object at `key` with the columns of `schema`. The columns numbered in
    /// `plain` get no dictionary: their values rarely repeat (ids, times, URLs), where a
    /// dictionary would cost a hash table insert per value and save nothing, or they are few
    /// or none (see `Rows::plain_columns`).
    pub fn start(
        store: &dyn ObjectStore,
        key: String,
        format: DataFormat,
        compression: Compression,
        schema: Arc<Schema>,
        plain: &[usize],
    ) -> Result<Self> {
        let sink = UploadWriter::new(store.upload(&key)?);
        let columns = schema.fields().len();
        let encoder = match format {
            DataFormat::Parquet => {
                let codec = match compression {
                    Compression::Snappy => PqCompression::SNAPPY,
                    Compression::Zstd => {
                        PqCompression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default())
                    }
                    Compression::None => PqCompression::UNCOMPRESSED,
                };
                // The chunks are encoded here (`lake/chunk.rs`); the writer makes the schema,
                // the footer and its copy of the Arrow schema.
                let props = WriterProperties::builder()
                    .set_compression(codec)
                    .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")))
                    .build();
                // `ArrowWriter` makes the Parquet schema and the footer's copy of the Arrow
                // schema; its row groups are then written by hand.
                let (writer, _) = ArrowWriter::try_new(sink, schema, Some(props))
                    .and_then(ArrowWriter::into_serialized_writer)
                    .map_err(|e| internal("starting a Parquet file", e))?;
                let leaves = writer.schema_descr().columns().to_vec();
                if leaves.len() != columns {
                    return Err(EngineError::Internal(format!(
                        "{} Parquet columns for {columns} fields",
                        leaves.len()
                    )));
                }
                let mut dictionary = vec![true; columns];
                for &i in plain {
                    if let Some(d) = dictionary.get_mut(i) {
                        *d = false;
                    }
                }
                Encoder::Parquet(ParquetFile {
                    writer,
                    dictionary,
                    leaves,
                    codec,
                    row_groups: 0,
                })
            }
            DataFormat::Json => Encoder::Json(flate2::write::GzEncoder::new(
                sink,
                flate2::Compression::default(),
            )),
        };
        Ok(OpenFile {
            key,
            columns,
            rows: 0,
            value_bytes: 0,
            encoder,
        })
    }

    fn sink(&mut self) -> &mut UploadWriter {
        match &mut self.encoder {
            Encoder::Parquet(f) => f.writer.inner_mut(),
            Encoder::Json(g) => g.get_mut(),
        }
    }

    /// A store error hidden behind an encoder's error, else the encoder's.
    fn failed(&mut self, what: &str, e: impl std::fmt::Display) -> EngineError {
        self.sink().error().unwrap_or_else(|| internal(what, e))
    }

    /// Appends `rows` (with this file's columns) as one row group.
    pub fn write(&mut self, rows: Rows, value_bytes: u64) -> Result<()> {
        let n = rows.rows;
        let r = match &mut self.encoder {
            Encoder::Parquet(f) => write_row_group(f, rows),
            Encoder::Json(g) => rows
                .into_batch()
                .map_err(|e| e.to_string())
                .and_then(|b| write_json(g, &b)),
        };
        if let Err(e) = r {
            return Err(self.failed("encoding a data file", e));
        }
        self.rows += n;
        self.value_bytes += value_bytes;
        Ok(())
    }

    /// Finishes the encoding (the Parquet footer); the upload is left to complete.
    pub fn close(self) -> Result<ClosedFile> {
        let r = match self.encoder {
            Encoder::Parquet(f) => f.writer.into_inner().map_err(|e| e.to_string()),
            Encoder::Json(g) => g.finish().map_err(|e| e.to_string()),
        };
        let mut sink = match r {
            Ok(s) => s,
            Err(e) => return Err(internal("closing a data file", e)),
        };
        let bytes = sink.written();
        if let Some(e) = sink.error() {
            if let Some(u) = sink.take() {
                u.abort();
            }
            return Err(e);
        }
        let upload = sink
            .take()
            .ok_or_else(|| EngineError::Internal("a data file lost its upload".into()))?;
        Ok(ClosedFile {
            key: self.key,
            upload,
            rows: self.rows,
            bytes,
        })
    }

    /// Gives the file up: nothing of it becomes visible.
    pub fn abort(mut self) {
        if let Some(u) = self.sink().take() {
            u.abort();
        }
    }
}

/// One row group, encoded a column at a time from the window's columns (`lake/chunk.rs`):
/// each column's values go straight into its pages, with no Arrow array or per-row nulls
/// made for it.
fn write_row_group(f: &mut ParquetFile, rows: Rows) -> std::result::Result<(), String> {
    let e = |e: parquet::errors::ParquetError| e.to_string();
    let width = rows.schema.fields().len();
    if f.leaves.len() != width || f.dictionary.len() != width {
        return Err(format!(
            "{} Parquet columns for {width} fields",
            f.leaves.len()
        ));
    }
    let mut group = f.writer.next_row_group().map_err(e)?;
    for i in 0..width {
        let (bytes, close) = super::chunk::encode(
            &rows.chunk(i),
            rows.rows,
            f.leaves[i].clone(),
            f.codec,
            f.dictionary[i],
        )
        .map_err(|e| e.to_string())?;
        group.append_column(&bytes, close).map_err(e)?;
    }
    group.close().map_err(e)?;
    f.row_groups += 1;
    f.writer.flush().map_err(|e| e.to_string())
}

/// Rows as NDJSON (nulls left out, `time` in integer epoch seconds: SPEC §4.2, §12 D2).
fn write_json(
    out: &mut flate2::write::GzEncoder<UploadWriter>,
    batch: &RecordBatch,
) -> std::result::Result<(), String> {
    let e = |e: arrow::error::ArrowError| e.to_string();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut arrays = Vec::with_capacity(batch.num_columns());
    for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(f.data_type(), DataType::Timestamp(..)) {
            let micros = arrow::compute::cast(a, &DataType::Int64).map_err(e)?;
            let secs = arrow::compute::kernels::numeric::div(
                &micros,
                &arrow::array::Int64Array::new_scalar(1_000_000),
            )
            .map_err(e)?;
            fields.push(Field::new(f.name(), DataType::Int64, true));
            arrays.push(secs);
        } else {
            fields.push(f.as_ref().clone());
            arrays.push(a.clone());
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(e)?;
    let mut w = arrow::json::LineDelimitedWriter::new(&mut *out);
    w.write(&batch).map_err(e)?;
    w.finish().map_err(e)?;
    out.flush().map_err(|e| e.to_string())
}
