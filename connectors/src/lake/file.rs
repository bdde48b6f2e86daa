//! A data file being written: row groups are encoded as a window fills and go to the object
//! store as they are produced (parts of a multipart upload on S3), so a large file is never one
//! buffer. The object becomes visible only when the commit completes it.

use std::io::Write;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, ColumnPath, SchemaDescriptor, Type};

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
    /// The file's writer properties: what parquet's column writers (dictionaries, page
    /// statistics, the page index) are made with, for the columns with values enough to fill
    /// them.
    props: WriterPropertiesPtr,
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
                let mut props = WriterProperties::builder()
                    .set_compression(codec)
                    .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")));
                for &i in plain {
                    if let Some(f) = schema.fields().get(i) {
                        props = props.set_column_dictionary_enabled(
                            ColumnPath::from(f.name().as_str()),
                            false,
                        );
                    }
                }
                let props = props.build();
                // `ArrowWriter` makes the Parquet schema and the footer's copy of the Arrow
                // schema; its row groups are then written by hand.
                let (writer, _) = ArrowWriter::try_new(sink, schema, Some(props))
                    .and_then(ArrowWriter::into_serialized_writer)
                    .map_err(|e| internal("starting a Parquet file", e))?;
                let props = writer.properties().clone();
                let leaves = writer.schema_descr().columns().to_vec();
                if leaves.len() != columns {
                    return Err(EngineError::Internal(format!(
                        "{} Parquet columns for {columns} fields",
                        leaves.len()
                    )));
                }
                Encoder::Parquet(ParquetFile {
                    writer,
                    props,
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

/// One row group, encoded a column at a time: each column's nulls exist only while it is
/// encoded (a wide table's padding is never all in memory at once). A sparse column (few
/// values among many rows, or none) is encoded by `lake/sparse.rs` in time proportional to its
/// values; the others by parquet's column writers, made for those columns only: a writer costs
/// its page buffers, statistics and codec, and parquet's row group factory makes one for
/// every column of the schema, which in a wide table is a cost per row group and column.
fn write_row_group(f: &mut ParquetFile, mut rows: Rows) -> std::result::Result<(), String> {
    let e = |e: parquet::errors::ParquetError| e.to_string();
    let schema = rows.schema.clone();
    if f.leaves.len() != schema.fields().len() {
        return Err(format!(
            "{} Parquet columns for {} fields",
            f.leaves.len(),
            schema.fields().len()
        ));
    }
    let dense: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| rows.sparse(i).is_none())
        .collect();
    let mut writers = dense_writers(f, &schema, &dense).map_err(e)?.into_iter();
    let mut group = f.writer.next_row_group().map_err(e)?;
    for (i, field) in schema.fields().iter().enumerate() {
        if let Some(sparse) = rows.sparse(i) {
            let (bytes, close) =
                super::sparse::encode(&sparse, rows.rows, f.leaves[i].clone(), f.codec)
                    .map_err(|e| e.to_string())?;
            group.append_column(&bytes, close).map_err(e)?;
            continue;
        }
        let mut writer = writers
            .next()
            .ok_or_else(|| format!("no column writer for column {i}"))?;
        let array = rows.take_array(i).map_err(|e| e.to_string())?;
        for leaf in compute_leaves(field, &array).map_err(e)? {
            writer.write(&leaf).map_err(e)?;
        }
        writer
            .close()
            .map_err(e)?
            .append_to_row_group(&mut group)
            .map_err(e)?;
    }
    group.close().map_err(e)?;
    f.row_groups += 1;
    f.writer.flush().map_err(|e| e.to_string())
}

/// Parquet's column writers for the columns numbered in `dense`, in that order, with the
/// file's properties. They are made from a schema of those columns alone; each leaf's
/// descriptor (type, levels, path) is the file's own, which the row group checks as it
/// takes each chunk.
fn dense_writers(
    f: &ParquetFile,
    schema: &Schema,
    dense: &[usize],
) -> parquet::errors::Result<Vec<parquet::arrow::arrow_writer::ArrowColumnWriter>> {
    let fields: Vec<_> = dense.iter().map(|&i| schema.fields()[i].clone()).collect();
    let leaves = dense.iter().map(|&i| f.leaves[i].self_type_ptr()).collect();
    let root = Type::group_type_builder("arrow_schema")
        .with_fields(leaves)
        .build()?;
    let descr = SchemaDescriptor::new(Arc::new(root));
    // Deprecated for `ArrowRowGroupWriterFactory`, which makes writers for a file's every
    // column and no subset of them.
    #[allow(deprecated)]
    parquet::arrow::arrow_writer::get_column_writers(
        &descr,
        &f.props,
        &Arc::new(Schema::new(fields)),
    )
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
