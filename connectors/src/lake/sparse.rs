//! Column chunks of sparse columns, encoded in time proportional to their values.
//!
//! A table of thousands of properties has thousands of columns, and most of an event's columns
//! are null. Parquet's own column writer handles a null like any value: a definition level per
//! row, counted, bit-packed and measured one by one, which made a row group cost its rows times
//! its columns. A column with few values among many rows is written here instead, as one data
//! page (format v1): the definition levels as runs (RLE: a run of nulls costs the same whether
//! it is 10 rows long or 40,000), the values plain, the page compressed with the file's codec.
//! The chunk carries its statistics (null count, min, max) and a page index (offset index and
//! column index), as the rest of the file's chunks do: readers prune row groups and pages, and
//! keep the file's page index (a chunk without an offset index makes parquet-rs drop the
//! whole file's).
//!
//! Still paid per sparse column and row group: this page's header, statistics and page index,
//! and the chunk's entry in the footer (Parquet has every column in every row group). No
//! parquet column writer is made for it (`lake/file.rs` makes them for dense columns only).

use bytes::Bytes;
use parquet::basic::{BoundaryOrder, Compression, Encoding, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use sluice_engine::{EngineError, Result};

use super::window::{Sparse, ValuesRef};

/// Bytes a string statistic keeps, as parquet's writer does by default (the files' writer
/// properties keep its defaults: `statistics_truncate_length` and
/// `column_index_truncate_length` are both 64): a longer minimum is cut (still a lower bound),
/// a longer maximum cut and its last character raised (still an upper bound).
const STATISTICS_TRUNCATE: usize = 64;

fn internal(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
}

/// Encodes `column`, of `rows` rows, as a column chunk: its bytes (for
/// `SerializedRowGroupWriter::append_column`) and what closing a column writer would report.
pub fn encode(
    column: &Sparse<'_>,
    rows: usize,
    descr: ColumnDescPtr,
    codec: Compression,
) -> Result<(Bytes, ColumnCloseResult)> {
    if descr.max_def_level() != 1 || descr.max_rep_level() != 0 {
        return Err(EngineError::Internal(format!(
            "column {} is not a nullable top-level column",
            descr.path()
        )));
    }
    let n = column.rows.len();
    let values = match &column.values {
        None => 0,
        Some(ValuesRef::Str { ends, .. }) => ends.len(),
        Some(ValuesRef::Num(xs)) => xs.len(),
        Some(ValuesRef::Time(xs)) => xs.len(),
        Some(ValuesRef::Bool(xs)) => xs.len(),
    };
    if values != n {
        return Err(EngineError::Internal(format!(
            "a sparse column has {values} values for {n} rows"
        )));
    }
    // A page header counts its values in an `i32`, and readers read a run's length into 31
    // bits.
    let count = |what: &str, x: usize| {
        i32::try_from(x)
            .map(|v| v as u32)
            .map_err(|_| internal(what, format!("{x} does not fit a page")))
    };
    let num_rows = count("rows of a sparse column", rows)?;

    // Definition levels (v1 page: a 4-byte length, then the RLE/bit-packed hybrid with bit
    // width 1, here runs only), then the values.
    let mut body = Vec::with_capacity(16 + n * 10);
    body.extend_from_slice(&[0; 4]);
    let mut next = 0usize;
    let mut i = 0;
    while i < n {
        let row = column.rows[i] as usize;
        if row < next || row >= rows {
            return Err(EngineError::Internal(format!(
                "a sparse column's row {row} is out of order or past its {rows} rows"
            )));
        }
        if row > next {
            run(&mut body, row - next, 0);
        }
        let mut len = 1;
        while i + len < n && column.rows[i + len] as usize == row + len {
            len += 1;
        }
        run(&mut body, len, 1);
        next = row + len;
        i += len;
    }
    if rows > next {
        run(&mut body, rows - next, 0);
    }
    let levels = count("definition levels", body.len() - 4)?;
    body[..4].copy_from_slice(&levels.to_le_bytes());

    let nulls = (rows - n) as u64;
    let statistics = match (&column.values, descr.physical_type()) {
        (None, t) => empty_statistics(t, nulls),
        (Some(ValuesRef::Str { bytes, ends }), PhysicalType::BYTE_ARRAY) => {
            let mut start = 0usize;
            let (mut min, mut max): (Option<&[u8]>, Option<&[u8]>) = (None, None);
            for &end in ends.iter() {
                let v = bytes
                    .get(start..end as usize)
                    .ok_or_else(|| EngineError::Internal("a string column's ends".into()))?;
                body.extend_from_slice(&(v.len() as u32).to_le_bytes());
                body.extend_from_slice(v);
                if min.is_none_or(|m| v < m) {
                    min = Some(v);
                }
                if max.is_none_or(|m| v > m) {
                    max = Some(v);
                }
                start = end as usize;
            }
            string_statistics(min, max, nulls)
        }
        (Some(ValuesRef::Num(xs)), PhysicalType::DOUBLE) => {
            let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
            for &x in xs.iter() {
                body.extend_from_slice(&x.to_le_bytes());
                // Parquet's order for doubles leaves NaN out of min and max.
                if !x.is_nan() {
                    min = min.min(x);
                    max = max.max(x);
                }
            }
            let (min, max) = if min > max {
                (None, None)
            } else {
                // A zero bound is written signed so that it covers both zeros (Parquet's rule).
                let min = if min == 0.0 { -0.0 } else { min };
                let max = if max == 0.0 { 0.0 } else { max };
                (Some(min), Some(max))
            };
            Statistics::double(min, max, None, Some(nulls), false)
        }
        (Some(ValuesRef::Time(xs)), PhysicalType::INT64) => {
            for &x in xs.iter() {
                body.extend_from_slice(&x.to_le_bytes());
            }
            Statistics::int64(
                xs.iter().copied().min(),
                xs.iter().copied().max(),
                None,
                Some(nulls),
                false,
            )
        }
        (Some(ValuesRef::Bool(xs)), PhysicalType::BOOLEAN) => {
            for chunk in xs.chunks(8) {
                let byte = chunk
                    .iter()
                    .enumerate()
                    .fold(0u8, |b, (i, &x)| b | (u8::from(x) << i));
                body.push(byte);
            }
            let any = |v: bool| xs.contains(&v).then_some(v);
            let (min, max) = match (any(false), any(true)) {
                (None, None) => (None, None),
                (f, t) => (f.or(t), t.or(f)),
            };
            Statistics::boolean(min, max, None, Some(nulls), false)
        }
        (Some(_), t) => {
            return Err(EngineError::Internal(format!(
                "a sparse column's values do not fit its Parquet type {t}"
            )))
        }
    };
    let statistics = with_legacy_min_max(statistics, descr.sort_order().is_signed());

    let uncompressed = body.len();
    let data = compress(body, codec)?;
    let page = CompressedPage::new(
        Page::DataPage {
            buf: Bytes::from(data),
            num_values: num_rows,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        },
        uncompressed,
    );
    let mut out = TrackedWrite::new(Vec::new());
    let spec = {
        let mut pages = SerializedPageWriter::new(&mut out);
        let spec = pages
            .write_page(page)
            .map_err(|e| internal("writing a sparse column's page", e))?;
        pages
            .close()
            .map_err(|e| internal("writing a sparse column's page", e))?;
        spec
    };
    let out = out
        .into_inner()
        .map_err(|e| internal("writing a sparse column's page", e))?;
    let size = |x: usize| i64::try_from(x).map_err(|e| internal("a sparse column's size", e));

    let index = column_index(&descr, &statistics, n == 0, nulls)?;
    let metadata = ColumnChunkMetaData::builder(descr)
        .set_compression(codec)
        .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
        .set_num_values(i64::from(num_rows))
        .set_total_compressed_size(size(spec.compressed_size)?)
        .set_total_uncompressed_size(size(spec.uncompressed_size)?)
        .set_data_page_offset(0)
        .set_statistics(statistics)
        .build()
        .map_err(|e| internal("a sparse column's metadata", e))?;
    let mut offsets = OffsetIndexBuilder::new();
    offsets.append_row_count(i64::from(num_rows));
    offsets.append_offset_and_size(
        0,
        i32::try_from(spec.compressed_size).map_err(|e| internal("a sparse column's page", e))?,
    );
    let close = ColumnCloseResult {
        bytes_written: out.len() as u64,
        rows_written: u64::from(num_rows),
        metadata,
        column_index: index,
        bloom_filter: None,
        offset_index: Some(offsets.build()),
    };
    Ok((Bytes::from(out), close))
}

/// The column index of the chunk's one page: a null page, or the page's min and max (the
/// chunk's, already cut to length). None when the page has values but no min and max (all
/// NaN), as parquet's writer does.
fn column_index(
    descr: &ColumnDescPtr,
    statistics: &Statistics,
    null_page: bool,
    nulls: u64,
) -> Result<Option<ColumnIndexMetaData>> {
    let mut index = ColumnIndexBuilder::new(descr.physical_type());
    let nulls = i64::try_from(nulls).map_err(|e| internal("a sparse column's nulls", e))?;
    if null_page {
        index.append(true, Vec::new(), Vec::new(), nulls);
    } else {
        match (statistics.min_bytes_opt(), statistics.max_bytes_opt()) {
            (Some(min), Some(max)) => index.append(false, min.to_vec(), max.to_vec(), nulls),
            _ => return Ok(None),
        }
    }
    // One page is in order either way.
    index.set_boundary_order(BoundaryOrder::ASCENDING);
    index
        .build()
        .map(Some)
        .map_err(|e| internal("a sparse column's column index", e))
}

/// Also writes the deprecated `min`/`max` fields for types whose order is signed, as
/// parquet's writer does, for older readers.
fn with_legacy_min_max(statistics: Statistics, signed: bool) -> Statistics {
    match statistics {
        Statistics::Boolean(s) => Statistics::Boolean(s.with_backwards_compatible_min_max(signed)),
        Statistics::Int32(s) => Statistics::Int32(s.with_backwards_compatible_min_max(signed)),
        Statistics::Int64(s) => Statistics::Int64(s.with_backwards_compatible_min_max(signed)),
        Statistics::Float(s) => Statistics::Float(s.with_backwards_compatible_min_max(signed)),
        Statistics::Double(s) => Statistics::Double(s.with_backwards_compatible_min_max(signed)),
        Statistics::ByteArray(s) => {
            Statistics::ByteArray(s.with_backwards_compatible_min_max(signed))
        }
        other => other,
    }
}

/// Appends one RLE run of `len` levels of `value` (bit width 1: the value takes one byte).
fn run(out: &mut Vec<u8>, len: usize, value: u8) {
    let mut header = (len as u64) << 1;
    while header >= 0x80 {
        out.push((header as u8) | 0x80);
        header >>= 7;
    }
    out.push(header as u8);
    out.push(value);
}

fn compress(body: Vec<u8>, codec: Compression) -> Result<Vec<u8>> {
    match codec {
        Compression::UNCOMPRESSED => Ok(body),
        Compression::SNAPPY => snap::raw::Encoder::new()
            .compress_vec(&body)
            .map_err(|e| internal("compressing a sparse column", e)),
        Compression::ZSTD(level) => zstd::bulk::compress(&body, level.compression_level())
            .map_err(|e| internal("compressing a sparse column", e)),
        other => Err(EngineError::Internal(format!(
            "sparse columns are not written with {other}"
        ))),
    }
}

fn empty_statistics(t: PhysicalType, nulls: u64) -> Statistics {
    match t {
        PhysicalType::BOOLEAN => Statistics::boolean(None, None, None, Some(nulls), false),
        PhysicalType::INT32 => Statistics::int32(None, None, None, Some(nulls), false),
        PhysicalType::INT64 => Statistics::int64(None, None, None, Some(nulls), false),
        PhysicalType::FLOAT => Statistics::float(None, None, None, Some(nulls), false),
        PhysicalType::DOUBLE => Statistics::double(None, None, None, Some(nulls), false),
        _ => Statistics::byte_array(None, None, None, Some(nulls), false),
    }
}

/// String statistics, cut to [`STATISTICS_TRUNCATE`] bytes as parquet's writer cuts them.
fn string_statistics(min: Option<&[u8]>, max: Option<&[u8]>, nulls: u64) -> Statistics {
    let (min, min_exact) = match min {
        Some(m) if m.len() > STATISTICS_TRUNCATE => (Some(floor(m)), false),
        m => (m.map(<[u8]>::to_vec), true),
    };
    let (max, max_exact) = match max {
        Some(m) if m.len() > STATISTICS_TRUNCATE => match ceiling(m) {
            Some(c) => (Some(c), false),
            None => (Some(m.to_vec()), true),
        },
        m => (m.map(<[u8]>::to_vec), true),
    };
    Statistics::ByteArray(
        ValueStatistics::new(
            min.map(ByteArray::from),
            max.map(ByteArray::from),
            None,
            Some(nulls),
            false,
        )
        .with_min_is_exact(min_exact)
        .with_max_is_exact(max_exact),
    )
}

/// The longest prefix of `s` of at most [`STATISTICS_TRUNCATE`] bytes that ends on a
/// character (`s` is UTF-8): it sorts at or before `s`.
fn floor(s: &[u8]) -> Vec<u8> {
    let mut end = STATISTICS_TRUNCATE.min(s.len());
    // A UTF-8 continuation byte is 0b10xx_xxxx.
    while end > 0 && end < s.len() && s[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    s[..end].to_vec()
}

/// A string of at most [`STATISTICS_TRUNCATE`] bytes that sorts after `s`: its prefix with
/// the last character that can be raised raised by one. None when no character can be (then
/// the whole value is kept).
fn ceiling(s: &[u8]) -> Option<Vec<u8>> {
    let prefix = std::str::from_utf8(&s[..floor(s).len()]).ok()?;
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let mut next = c as u32 + 1;
        // Past the surrogates, which are no characters.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(up) = char::from_u32(next) {
            let mut out: String = chars.iter().collect();
            out.push(up);
            if out.len() <= STATISTICS_TRUNCATE {
                return Some(out.into_bytes());
            }
        }
    }
    None
}
