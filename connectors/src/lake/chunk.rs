//! Column chunks, encoded straight from a window's column: its values one after another and
//! the rows they belong to.
//!
//! Parquet's Arrow writer wants an Arrow array per column (its nulls made per row), then
//! computes a definition level per row, interns every value of a dictionary column in a hash
//! table and compares every string with the page's minimum and maximum. Here a chunk costs
//! its values, not its rows, wherever it can:
//!
//! - definition levels are written from the rows that have values: one run when every row
//!   has one, runs when few do (a run of 40,000 nulls costs what a run of 1 does), else one
//!   bit-packed run made as a bitmap;
//! - a dictionary column hashes each value once (the previous value is tried first: data
//!   often repeats), and its statistics come from its entries' order (two integer
//!   comparisons per value), not from comparing the values themselves;
//! - a plain string column compares values by their first eight bytes, and the rest only on
//!   a tie.
//!
//! Pages (format v1) hold at most [`PAGE_ROWS`] rows and about [`PAGE_BYTES`] of values, as
//! parquet's writer cuts them by default; each is compressed with the file's codec. The chunk
//! carries its statistics (null count, min, max; strings cut to 64 bytes as parquet's writer
//! cuts them), the encodings of its pages, and a page index (offset index and column index),
//! so readers prune row groups and pages and keep the file's page index.

use bytes::Bytes;
use parquet::basic::{BoundaryOrder, Compression, Encoding, PageType, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use sluice_engine::{EngineError, Result};

use super::window::ValuesRef;

/// Bytes a string statistic keeps, as parquet's writer does by default
/// (`statistics_truncate_length` and `column_index_truncate_length` are both 64): a longer
/// minimum is cut (still a lower bound), a longer maximum cut and its last character raised
/// (still an upper bound).
const STATISTICS_TRUNCATE: usize = 64;

/// Rows a data page holds at most (parquet's `data_page_row_count_limit`).
pub const PAGE_ROWS: usize = 20_000;
/// Bytes of encoded values after which a page ends (parquet's `data_page_size_limit`).
const PAGE_BYTES: usize = 1024 * 1024;
/// A dictionary larger than this (plain-encoded) is given up for plain values, as parquet's
/// writer falls back past `dictionary_page_size_limit`.
const DICTIONARY_BYTES: usize = 1024 * 1024;

/// Values a dictionary is tried on before it is judged: one whose entries are then nine in
/// ten of its values (ids, times) goes plain, saving the rest of a table that would only grow
/// past [`DICTIONARY_BYTES`] or save nothing.
const DICTIONARY_TRIAL: usize = 8192;

/// Whether a dictionary of `entries` after [`DICTIONARY_TRIAL`] values is given up.
fn too_distinct(entries: usize) -> bool {
    entries * 10 >= DICTIONARY_TRIAL * 9
}

/// A column's values for one row group: the rows that have a value (ascending), and the
/// values; `values` is `None` for a column with none.
pub struct Chunk<'a> {
    pub rows: &'a [u32],
    pub values: Option<ValuesRef<'a>>,
}

fn internal(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
}

/// Encodes `column`, of `rows` rows, as a column chunk: its bytes (for
/// `SerializedRowGroupWriter::append_column`) and what closing a column writer would report.
/// With `dictionary`, values go through a dictionary unless the first [`DICTIONARY_TRIAL`] are
/// nearly all distinct or it grows past
/// [`DICTIONARY_BYTES`].
pub fn encode(
    column: &Chunk<'_>,
    rows: usize,
    descr: ColumnDescPtr,
    codec: Compression,
    dictionary: bool,
) -> Result<(Bytes, ColumnCloseResult)> {
    if descr.max_def_level() != 1 || descr.max_rep_level() != 0 {
        return Err(EngineError::Internal(format!(
            "column {} is not a nullable top-level column",
            descr.path()
        )));
    }
    let values = match column.values {
        None => None,
        Some(v) => Some(Vals::of(v, descr.physical_type())?),
    };
    let n = values.as_ref().map_or(0, Vals::len);
    if n != column.rows.len() {
        return Err(EngineError::Internal(format!(
            "a column has {n} values for {} rows",
            column.rows.len()
        )));
    }
    // The standard check goes through a slice in chunks without a branch per pair (a
    // `find` with an exit at each pair made this check 1% of W1).
    if !column.rows.is_sorted_by(|a, b| a < b) {
        let w = column
            .rows
            .windows(2)
            .find(|w| w[0] >= w[1])
            .unwrap_or(&[0, 0]);
        return Err(EngineError::Internal(format!(
            "a column's rows are out of order: {} then {}",
            w[0], w[1]
        )));
    }
    if column.rows.last().is_some_and(|&r| r as usize >= rows) {
        return Err(EngineError::Internal(format!(
            "a column has a value past its {rows} rows"
        )));
    }
    count("rows of a column chunk", rows)?;
    let dict = match &values {
        Some(v) if dictionary && n > 0 => Dict::build(v),
        _ => None,
    };

    // Room for the chunk as written uncompressed (Snappy seldom writes more): grown by
    // doubling, the chunk was copied whole a dozen times (untouched room costs no memory).
    let levels = rows.div_ceil(8) + 64;
    let room = match (&values, &dict) {
        (Some(_), Some(d)) => d.bytes + n * d.bit_width as usize / 8 + 8 + levels,
        (Some(v), None) => v.plain_size(0..n) + levels,
        (None, _) => levels,
    };
    let mut out = TrackedWrite::new(Vec::with_capacity(room + room / 8));
    let mut pages = SerializedPageWriter::new(&mut out);
    let write = |pages: &mut SerializedPageWriter<'_, _>, page: CompressedPage| {
        pages
            .write_page(page)
            .map_err(|e| internal("writing a column chunk's page", e))
    };

    // The dictionary page: its entries, plain.
    let mut dictionary_offset = None;
    let mut uncompressed = 0usize;
    if let (Some(v), Some(d)) = (&values, &dict) {
        let mut body = Vec::with_capacity(d.bytes);
        for &first in &d.first {
            v.plain_one(first as usize, &mut body);
        }
        let body_len = body.len();
        let page = CompressedPage::new(
            Page::DictionaryPage {
                buf: Bytes::from(compress(body, codec)?),
                num_values: count("dictionary entries", d.first.len())?,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            },
            body_len,
        );
        let spec = write(&mut pages, page)?;
        dictionary_offset = Some(spec.offset as i64);
        uncompressed += spec.uncompressed_size;
    }

    // The data pages.
    let mut offsets = OffsetIndexBuilder::new();
    let mut page_stats: Vec<PageBound> = Vec::new();
    let mut seen = Vec::new();
    let mut first_data = None;
    let mut data_pages = 0;
    let mut row = 0usize;
    let mut next_value = 0usize;
    loop {
        let (end_row, end_value) =
            page_end(column.rows, values.as_ref(), &dict, row, next_value, rows);
        let page_rows = &column.rows[next_value..end_value];
        let mut body = Vec::with_capacity(
            16 + (end_row - row).div_ceil(8)
                + match (&values, &dict) {
                    (Some(_), Some(d)) => 8 + (end_value - next_value) * d.bit_width as usize / 8,
                    (Some(v), None) => v.plain_size(next_value..end_value),
                    (None, _) => 0,
                },
        );
        body.extend_from_slice(&[0; 4]);
        def_levels(&mut body, page_rows, row, end_row);
        let levels = count("definition levels", body.len() - 4)?;
        body[..4].copy_from_slice(&levels.to_le_bytes());
        let bound = match (&values, &dict) {
            (Some(v), Some(d)) => {
                let idx = &d.idx[next_value..end_value];
                body.push(d.bit_width);
                hybrid(&mut body, idx, d.bit_width);
                match v {
                    // Strings by their entries: no string compared per value.
                    Vals::Str { .. } => d.bound(v, idx, &mut seen),
                    _ => v.bound(next_value..end_value),
                }
            }
            (Some(v), None) => {
                v.plain(next_value..end_value, &mut body);
                v.bound(next_value..end_value)
            }
            (None, _) => Bound::None,
        };
        page_stats.push(PageBound {
            bound,
            nulls: ((end_row - row) - (end_value - next_value)) as u64,
            values: end_value > next_value,
        });
        let page_uncompressed = body.len();
        let page = CompressedPage::new(
            Page::DataPage {
                buf: Bytes::from(compress(body, codec)?),
                num_values: count("rows of a page", end_row - row)?,
                encoding: if dict.is_some() {
                    Encoding::RLE_DICTIONARY
                } else {
                    Encoding::PLAIN
                },
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            },
            page_uncompressed,
        );
        let spec = write(&mut pages, page)?;
        first_data.get_or_insert(spec.offset as i64);
        offsets.append_row_count(row as i64);
        offsets.append_offset_and_size(
            spec.offset as i64,
            i32::try_from(spec.compressed_size).map_err(|e| internal("a page's size", e))?,
        );
        uncompressed += spec.uncompressed_size;
        data_pages += 1;
        row = end_row;
        next_value = end_value;
        if row >= rows {
            break;
        }
    }
    pages
        .close()
        .map_err(|e| internal("writing a column chunk's page", e))?;
    let out = out
        .into_inner()
        .map_err(|e| internal("writing a column chunk", e))?;
    let size = |x: usize| i64::try_from(x).map_err(|e| internal("a column chunk's size", e));
    let uncompressed = uncompressed.max(out.len());

    let physical = descr.physical_type();
    let signed = descr.sort_order().is_signed();
    let nulls = (rows - n) as u64;
    let chunk_bound = page_stats
        .iter()
        .fold(Bound::None, |acc, p| acc.merge(&p.bound));
    let statistics = with_legacy_min_max(chunk_bound.statistics(physical, nulls), signed);
    let index = column_index(physical, &page_stats)?;
    let mut encodings = vec![Encoding::PLAIN, Encoding::RLE];
    let mut encoding_stats = Vec::new();
    if dict.is_some() {
        encodings.push(Encoding::RLE_DICTIONARY);
        encoding_stats.push(PageEncodingStats {
            page_type: PageType::DICTIONARY_PAGE,
            encoding: Encoding::PLAIN,
            count: 1,
        });
    }
    encoding_stats.push(PageEncodingStats {
        page_type: PageType::DATA_PAGE,
        encoding: if dict.is_some() {
            Encoding::RLE_DICTIONARY
        } else {
            Encoding::PLAIN
        },
        count: data_pages,
    });
    let metadata = ColumnChunkMetaData::builder(descr)
        .set_compression(codec)
        .set_encodings(encodings)
        .set_page_encoding_stats(encoding_stats)
        .set_num_values(rows as i64)
        .set_total_compressed_size(size(out.len())?)
        .set_total_uncompressed_size(size(uncompressed)?)
        .set_dictionary_page_offset(dictionary_offset)
        .set_data_page_offset(first_data.unwrap_or(0))
        .set_statistics(statistics)
        .build()
        .map_err(|e| internal("a column chunk's metadata", e))?;
    let close = ColumnCloseResult {
        bytes_written: out.len() as u64,
        rows_written: rows as u64,
        metadata,
        column_index: index,
        bloom_filter: None,
        offset_index: Some(offsets.build()),
    };
    Ok((Bytes::from(out), close))
}

/// A page header counts in an `i32`, and readers read a run's length into 31 bits.
fn count(what: &str, x: usize) -> Result<u32> {
    i32::try_from(x)
        .map(|v| v as u32)
        .map_err(|_| internal(what, format!("{x} does not fit a page")))
}

/// Where the page starting at `row` (and value `value`) ends: at most [`PAGE_ROWS`] rows,
/// and ended early once its values take [`PAGE_BYTES`].
fn page_end(
    rows: &[u32],
    values: Option<&Vals<'_>>,
    dict: &Option<Dict>,
    row: usize,
    value: usize,
    total: usize,
) -> (usize, usize) {
    let mut end_row = (row + PAGE_ROWS).min(total);
    let mut end_value = value + rows[value..].partition_point(|&r| (r as usize) < end_row);
    if let (Some(v), None) = (values, dict) {
        if let Some(cut) = v.bytes_cut(value, end_value, PAGE_BYTES) {
            // The page ends with the row of the value that filled it.
            end_value = cut;
            end_row = rows[cut - 1] as usize + 1;
        }
    }
    (end_row, end_value)
}

/// A column's values, typed as the column is.
enum Vals<'a> {
    Str { bytes: &'a [u8], ends: &'a [i32] },
    F64(&'a [f64]),
    I64(&'a [i64]),
    Bool(&'a [bool]),
}

impl<'a> Vals<'a> {
    fn of(v: ValuesRef<'a>, t: PhysicalType) -> Result<Self> {
        Ok(match (v, t) {
            (ValuesRef::Str { bytes, ends }, PhysicalType::BYTE_ARRAY) => {
                if ends.last().is_some_and(|&e| e as usize > bytes.len())
                    || ends.first().is_some_and(|&e| e < 0)
                {
                    return Err(EngineError::Internal("a string column's ends".into()));
                }
                Vals::Str { bytes, ends }
            }
            (ValuesRef::Num(x), PhysicalType::DOUBLE) => Vals::F64(x),
            (ValuesRef::Time(x), PhysicalType::INT64) => Vals::I64(x),
            (ValuesRef::Bool(x), PhysicalType::BOOLEAN) => Vals::Bool(x),
            (_, t) => {
                return Err(EngineError::Internal(format!(
                    "a column's values do not fit its Parquet type {t}"
                )))
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Vals::Str { ends, .. } => ends.len(),
            Vals::F64(x) => x.len(),
            Vals::I64(x) => x.len(),
            Vals::Bool(x) => x.len(),
        }
    }

    /// String value `i`.
    #[inline(always)]
    fn str_at(bytes: &'a [u8], ends: &[i32], i: usize) -> &'a [u8] {
        &bytes[str_start(ends, i)..ends[i] as usize]
    }

    /// The first value index past `from` at which the values `from..` take `limit` bytes
    /// plain, if that happens before `to`. Strings only (the others are small).
    fn bytes_cut(&self, from: usize, to: usize, limit: usize) -> Option<usize> {
        let Vals::Str { ends, .. } = self else {
            return None;
        };
        let start = str_start(ends, from);
        let taken = |i: usize| ends[i] as usize - start + 4 * (i + 1 - from);
        if to == from || taken(to - 1) < limit {
            return None;
        }
        // The first value at which the page is full: what it takes only grows.
        let (mut lo, mut hi) = (from, to - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if taken(mid) >= limit {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo + 1)
    }

    /// The bytes values `range` take plain-encoded.
    fn plain_size(&self, range: std::ops::Range<usize>) -> usize {
        match self {
            Vals::Str { ends, .. } => {
                let start = str_start(ends, range.start);
                let end = str_start(ends, range.end);
                end - start + 4 * range.len()
            }
            Vals::F64(_) | Vals::I64(_) => 8 * range.len(),
            Vals::Bool(_) => range.len().div_ceil(8),
        }
    }

    /// Value `i`, plain-encoded.
    fn plain_one(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            Vals::Str { bytes, ends } => {
                let v = Self::str_at(bytes, ends, i);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            Vals::F64(x) => out.extend_from_slice(&x[i].to_le_bytes()),
            Vals::I64(x) => out.extend_from_slice(&x[i].to_le_bytes()),
            Vals::Bool(x) => out.push(u8::from(x[i])),
        }
    }

    /// Values `range`, plain-encoded.
    fn plain(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        match self {
            Vals::Str { bytes, ends } => {
                let start = str_start(ends, range.start);
                let end = str_start(ends, range.end);
                out.reserve(end - start + 4 * range.len());
                let mut s = start;
                for &e in &ends[range] {
                    let e = e as usize;
                    out.extend_from_slice(&((e - s) as u32).to_le_bytes());
                    out.extend_from_slice(&bytes[s..e]);
                    s = e;
                }
            }
            Vals::F64(x) => {
                out.reserve(8 * range.len());
                for v in &x[range] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Vals::I64(x) => {
                out.reserve(8 * range.len());
                for v in &x[range] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Vals::Bool(x) => {
                for chunk in x[range].chunks(8) {
                    let byte = chunk
                        .iter()
                        .enumerate()
                        .fold(0u8, |b, (i, &v)| b | (u8::from(v) << i));
                    out.push(byte);
                }
            }
        }
    }

    /// The minimum and maximum of values `range`.
    fn bound(&self, range: std::ops::Range<usize>) -> Bound<'a> {
        if range.is_empty() {
            return Bound::None;
        }
        match self {
            Vals::Str { bytes, ends } => {
                let (bytes, ends) = (*bytes, *ends);
                let first = Self::str_at(bytes, ends, range.start);
                let (mut min, mut max) = (first, first);
                let mut start = str_start(ends, range.start);
                let first_key = prefix(bytes, start, first.len());
                let (mut min_key, mut max_key) = (first_key, first_key);
                for &e in &ends[range] {
                    let v = &bytes[start..e as usize];
                    // The first eight bytes decide, unless they tie.
                    let k = prefix(bytes, start, v.len());
                    start = e as usize;
                    if k < min_key || (k == min_key && v < min) {
                        min = v;
                        min_key = k;
                    }
                    if k > max_key || (k == max_key && v > max) {
                        max = v;
                        max_key = k;
                    }
                }
                Bound::Str(min, max)
            }
            Vals::F64(x) => f64_bound(&x[range]),
            Vals::I64(x) => {
                let s = &x[range];
                let min = s.iter().copied().fold(i64::MAX, i64::min);
                let max = s.iter().copied().fold(i64::MIN, i64::max);
                Bound::I64(min, max)
            }
            Vals::Bool(x) => {
                let s = &x[range];
                let (any_false, any_true) = (s.contains(&false), s.contains(&true));
                Bound::Bool(!any_false, any_true)
            }
        }
    }
}

/// The first eight bytes of the `len` bytes of `b` at `at`, zero-padded, as a number that
/// orders as the bytes do: [`word`] (one load, not a copy of up to eight bytes, which was a
/// call to `memcpy` per value) with its bytes turned around.
#[inline(always)]
fn prefix(b: &[u8], at: usize, len: usize) -> u64 {
    word(b, at, len).swap_bytes()
}

fn f64_bound(xs: &[f64]) -> Bound<'static> {
    // A comparison with NaN is false, so NaN never becomes a minimum or a maximum (Parquet's
    // order for doubles leaves it out of both).
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    // Two doubles a step where SSE2 is certain (every x86_64): `minpd` keeps its second
    // operand where the first is NaN, as the comparisons below do.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let rest = {
        use std::arch::x86_64::{_mm_loadu_pd, _mm_max_pd, _mm_min_pd, _mm_set1_pd, _mm_storeu_pd};
        let mut quads = xs.chunks_exact(4);
        // SAFETY: the build enables SSE2 (the cfg above); each load reads two of the four
        // doubles of a chunk, and `_mm_loadu_pd` and `_mm_storeu_pd` take any alignment.
        unsafe {
            let (mut lo, mut hi) = (_mm_set1_pd(min), _mm_set1_pd(max));
            let (mut lo2, mut hi2) = (lo, hi);
            for q in &mut quads {
                let a = _mm_loadu_pd(q.as_ptr());
                let b = _mm_loadu_pd(q.as_ptr().add(2));
                lo = _mm_min_pd(a, lo);
                hi = _mm_max_pd(a, hi);
                lo2 = _mm_min_pd(b, lo2);
                hi2 = _mm_max_pd(b, hi2);
            }
            let (mut l, mut h) = ([0.0f64; 2], [0.0f64; 2]);
            _mm_storeu_pd(l.as_mut_ptr(), _mm_min_pd(lo, lo2));
            _mm_storeu_pd(h.as_mut_ptr(), _mm_max_pd(hi, hi2));
            (min, max) = (l[0].min(l[1]), h[0].max(h[1]));
        }
        quads.remainder()
    };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let rest = xs;
    for &x in rest {
        if x < min {
            min = x;
        }
        if x > max {
            max = x;
        }
    }
    if min > max {
        Bound::None
    } else {
        Bound::F64(min, max)
    }
}

/// The minimum and maximum of some values; `None` when there are none (or only NaN).
#[derive(Clone, Copy, Debug)]
enum Bound<'a> {
    None,
    Str(&'a [u8], &'a [u8]),
    F64(f64, f64),
    I64(i64, i64),
    /// (min, max)
    Bool(bool, bool),
}

impl<'a> Bound<'a> {
    fn merge(self, other: &Bound<'a>) -> Bound<'a> {
        match (self, *other) {
            (Bound::None, b) | (b, Bound::None) => b,
            (Bound::Str(a, b), Bound::Str(c, d)) => Bound::Str(a.min(c), b.max(d)),
            (Bound::F64(a, b), Bound::F64(c, d)) => Bound::F64(a.min(c), b.max(d)),
            (Bound::I64(a, b), Bound::I64(c, d)) => Bound::I64(a.min(c), b.max(d)),
            (Bound::Bool(a, b), Bound::Bool(c, d)) => Bound::Bool(a & c, b | d),
            (a, _) => a,
        }
    }

    /// The chunk's statistics of this bound.
    fn statistics(self, t: PhysicalType, nulls: u64) -> Statistics {
        match self {
            Bound::None => empty_statistics(t, nulls),
            Bound::Str(min, max) => string_statistics(Some(min), Some(max), nulls),
            Bound::F64(min, max) => {
                let (min, max) = signed_zero_bounds(min, max);
                Statistics::double(Some(min), Some(max), None, Some(nulls), false)
            }
            Bound::I64(min, max) => {
                Statistics::int64(Some(min), Some(max), None, Some(nulls), false)
            }
            Bound::Bool(min, max) => {
                Statistics::boolean(Some(min), Some(max), None, Some(nulls), false)
            }
        }
    }

    /// Min and max as the column index holds them (plain-encoded, strings cut).
    fn index_bytes(self) -> Option<(Vec<u8>, Vec<u8>)> {
        match self {
            Bound::None => None,
            Bound::Str(min, max) => {
                let min = if min.len() > STATISTICS_TRUNCATE {
                    floor(min)
                } else {
                    min.to_vec()
                };
                let max = if max.len() > STATISTICS_TRUNCATE {
                    ceiling(max).unwrap_or_else(|| max.to_vec())
                } else {
                    max.to_vec()
                };
                Some((min, max))
            }
            Bound::F64(min, max) => {
                let (min, max) = signed_zero_bounds(min, max);
                Some((min.to_le_bytes().to_vec(), max.to_le_bytes().to_vec()))
            }
            Bound::I64(min, max) => Some((min.to_le_bytes().to_vec(), max.to_le_bytes().to_vec())),
            Bound::Bool(min, max) => Some((vec![u8::from(min)], vec![u8::from(max)])),
        }
    }

    /// Whether `self` is at or below `next` at both ends, and whether at or above.
    fn order(&self, next: &Bound<'_>) -> (bool, bool) {
        fn cmp<T: PartialOrd>(a: T, b: T, c: T, d: T) -> (bool, bool) {
            (a <= c && b <= d, a >= c && b >= d)
        }
        match (*self, *next) {
            (Bound::Str(a, b), Bound::Str(c, d)) => cmp(a, b, c, d),
            (Bound::F64(a, b), Bound::F64(c, d)) => cmp(a, b, c, d),
            (Bound::I64(a, b), Bound::I64(c, d)) => cmp(a, b, c, d),
            (Bound::Bool(a, b), Bound::Bool(c, d)) => cmp(a, b, c, d),
            _ => (true, true),
        }
    }
}

/// A zero bound is written signed so that it covers both zeros (Parquet's rule).
fn signed_zero_bounds(min: f64, max: f64) -> (f64, f64) {
    let min = if min == 0.0 { -0.0 } else { min };
    let max = if max == 0.0 { 0.0 } else { max };
    (min, max)
}

/// A chunk's dictionary: each value's entry, and each entry's first value.
struct Dict {
    idx: Vec<u32>,
    first: Vec<u32>,
    bit_width: u8,
    /// The dictionary page's plain size.
    bytes: usize,
}

impl Dict {
    /// The dictionary of `v`, or `None` when it would grow past [`DICTIONARY_BYTES`] (or
    /// for booleans, which parquet's writer keeps plain).
    fn build(v: &Vals<'_>) -> Option<Dict> {
        let n = v.len();
        let mut idx = Vec::with_capacity(n);
        let mut first: Vec<u32> = Vec::new();
        let mut bytes = 0usize;
        match v {
            Vals::Str { bytes: b, ends } => {
                let mut table = StrTable::default();
                let mut start = 0usize;
                for (i, &e) in ends.iter().enumerate() {
                    let (at, len) = (start, e as usize - start);
                    start = e as usize;
                    let id = match table.find_or_add(b, at, len, first.len() as u32) {
                        Found::Old(id) => id,
                        Found::New(id) => {
                            bytes += len + 4;
                            if bytes > DICTIONARY_BYTES {
                                return None;
                            }
                            first.push(i as u32);
                            id
                        }
                    };
                    idx.push(id);
                    if i + 1 == DICTIONARY_TRIAL && too_distinct(first.len()) {
                        return None;
                    }
                }
            }
            Vals::F64(x) => {
                let mut table = WordTable::default();
                for (i, x) in x.iter().enumerate() {
                    idx.push(table.find_or_add(x.to_bits(), i as u32, &mut first));
                    if i + 1 == DICTIONARY_TRIAL && too_distinct(first.len()) {
                        return None;
                    }
                }
                bytes = 8 * first.len();
            }
            Vals::I64(x) => {
                let mut table = WordTable::default();
                for (i, &x) in x.iter().enumerate() {
                    idx.push(table.find_or_add(x as u64, i as u32, &mut first));
                    if i + 1 == DICTIONARY_TRIAL && too_distinct(first.len()) {
                        return None;
                    }
                }
                bytes = 8 * first.len();
            }
            Vals::Bool(_) => return None,
        }
        if bytes > DICTIONARY_BYTES {
            return None;
        }
        let max = first.len().saturating_sub(1) as u64;
        let bit_width = (64 - max.leading_zeros()) as u8;
        Some(Dict {
            idx,
            first,
            bit_width,
            bytes,
        })
    }

    /// The minimum and maximum of the strings whose entries are `idx` (a page's): each entry
    /// met is compared once, the first time (`seen` is scratch room). Sorting the entries
    /// instead, for ranks to compare per value, took n log n string comparisons per row
    /// group: 1% of W1's instructions.
    fn bound<'a>(&self, v: &Vals<'a>, idx: &[u32], seen: &mut Vec<u64>) -> Bound<'a> {
        let Vals::Str { bytes, ends } = v else {
            // Numbers' bounds come from the values.
            return Bound::None;
        };
        let at = |e: u32| Vals::str_at(bytes, ends, self.first[e as usize] as usize);
        let mut lo_hi: Option<(&'a [u8], &'a [u8])> = None;
        let mut meet = |s: &'a [u8]| {
            lo_hi = Some(match lo_hi {
                None => (s, s),
                Some((lo, hi)) if s < lo => (s, hi),
                Some((lo, hi)) if s > hi => (lo, s),
                Some(b) => b,
            });
        };
        if idx.len() == self.idx.len() {
            // The whole chunk (one page): every entry is met.
            for e in 0..self.first.len() as u32 {
                meet(at(e));
            }
        } else {
            seen.clear();
            seen.resize(self.first.len().div_ceil(64), 0);
            for &e in idx {
                let (word, bit) = (e as usize / 64, 1u64 << (e % 64));
                if seen[word] & bit == 0 {
                    seen[word] |= bit;
                    meet(at(e));
                }
            }
        }
        match lo_hi {
            Some((lo, hi)) => Bound::Str(lo, hi),
            None => Bound::None,
        }
    }
}

/// Where string value `i` starts in its bytes (where value `i - 1` ends); for `i` = the
/// number of values, where they all end.
#[inline(always)]
fn str_start(ends: &[i32], i: usize) -> usize {
    if i == 0 {
        0
    } else {
        ends[i - 1] as usize
    }
}

/// Whether a dictionary lookup found its value or added it.
enum Found {
    Old(u32),
    New(u32),
}

/// A dictionary's strings (places in one buffer), by a hash of their length and their words:
/// an open-addressed table of entry numbers. Each entry keeps the string's first sixteen bytes
/// as two words beside its length, so that a value of up to sixteen bytes (most) is compared
/// with an entry without reading the entry's string: that string is the entry's first value,
/// far back in the row group's bytes and long gone from the cache (a general hash map was a
/// tenth of a run; comparing in the buffer, a miss per value).
#[derive(Default)]
struct StrTable {
    /// Entry number + 1 per slot (0: empty); a power of two, at most half full.
    slots: Vec<u32>,
    entries: Vec<StrEntry>,
}

/// A string of a [`StrTable`]: its first sixteen bytes (zero past its end), its length and
/// where it starts in the buffer.
#[derive(Clone, Copy)]
struct StrEntry {
    head: [u64; 2],
    len: u32,
    at: u32,
}

impl StrTable {
    /// The entry of the `len` bytes of `b` at `at`; `Found::New(next)` when added. Places
    /// and lengths fit in 31 bits (a row group's strings are Arrow's, with `i32` offsets).
    #[inline(always)]
    fn find_or_add(&mut self, b: &[u8], at: usize, len: usize, next: u32) -> Found {
        if self.entries.len() * 2 >= self.slots.len() {
            self.grow(b);
        }
        let head = [word(b, at, len), word(b, at + 8, len.saturating_sub(8))];
        let h = str_hash(b, at, len, head);
        let mask = self.slots.len() - 1;
        let mut slot = (h as usize) & mask;
        loop {
            let e = self.slots[slot];
            if e == 0 {
                self.entries.push(StrEntry {
                    head,
                    len: len as u32,
                    at: at as u32,
                });
                self.slots[slot] = self.entries.len() as u32;
                return Found::New(next);
            }
            let x = self.entries[e as usize - 1];
            if x.head == head
                && x.len as usize == len
                && (len <= 16 || b[x.at as usize + 16..][..len - 16] == b[at + 16..][..len - 16])
            {
                return Found::Old(e - 1);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn grow(&mut self, b: &[u8]) {
        let size = (self.slots.len() * 2).max(64);
        self.slots = vec![0; size];
        let mask = size - 1;
        for (i, x) in self.entries.iter().enumerate() {
            let h = str_hash(b, x.at as usize, x.len as usize, x.head);
            let mut at = (h as usize) & mask;
            while self.slots[at] != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = i as u32 + 1;
        }
    }
}

/// The low `n` bytes of a word, for `n` from 0 to 8.
const WORD_MASKS: [u64; 9] = {
    let mut m = [0u64; 9];
    let mut n = 1;
    while n < 9 {
        m[n] = u64::MAX >> (64 - 8 * n);
        n += 1;
    }
    m
};

/// The `len` (at most 8) bytes of `b` at `at`, zero-padded, as a number: one load of a whole
/// word when the buffer goes on that far, masked to the value.
#[inline(always)]
fn word(b: &[u8], at: usize, len: usize) -> u64 {
    let rest = b.get(at..).unwrap_or(&[]);
    if let Some(w) = rest.first_chunk::<8>() {
        // The mask looked up, without a branch on the length (worked out with two shifts, it
        // was 3% of building a dictionary's instructions).
        return u64::from_le_bytes(*w) & WORD_MASKS[len.min(8)];
    }
    let n = len.min(8).min(rest.len());
    rest[..n]
        .iter()
        .enumerate()
        .fold(0u64, |w, (i, &c)| w | ((c as u64) << (8 * i)))
}

/// A hash of the `len` bytes of `b` at `at` (whose first sixteen are `head`), put through
/// MurmurHash3's finalizer so that the low bits (the table's slot) depend on every byte
/// (values such as `user-1234` or `1.23.4` differ in a few bytes only). A value of up to 16
/// bytes (most) is its length and two words, with no loop; a longer one every word (JSON
/// text such as `{"total":12.5,...}` differs in its middle).
#[inline(always)]
fn str_hash(b: &[u8], at: usize, len: usize, head: [u64; 2]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    if len <= 16 {
        return fmix(head[0] ^ head[1].rotate_left(29) ^ (len as u64).wrapping_mul(K));
    }
    // Two words a step into two hashes (each step waits on the last multiplication: two
    // chains run side by side), whole words loaded as they are; the last up to sixteen
    // bytes masked.
    let (mut h, mut g) = (len as u64, K);
    let mut off = 0;
    while let Some(w) = b
        .get(at + off..at + len)
        .and_then(|r| r.first_chunk::<16>())
    {
        let (w0, w1) = w.split_at(8);
        h = ((h ^ le_word(w0)).wrapping_mul(K)).rotate_left(31);
        g = ((g ^ le_word(w1)).wrapping_mul(K)).rotate_left(31);
        off += 16;
    }
    if off < len {
        h = ((h ^ word(b, at + off, len - off)).wrapping_mul(K)).rotate_left(31);
        g = ((g ^ word(b, at + off + 8, len.saturating_sub(off + 8))).wrapping_mul(K))
            .rotate_left(31);
    }
    fmix(h ^ g.rotate_left(23))
}

/// Eight bytes as a little-endian number (`w` has eight).
#[inline(always)]
fn le_word(w: &[u8]) -> u64 {
    w.first_chunk::<8>().map_or(0, |c| u64::from_le_bytes(*c))
}

/// MurmurHash3's 64-bit finalizer: every bit of the result depends on every bit of `h`.
#[inline(always)]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// A dictionary of numbers (a double's bits, a time): an open-addressed table of entry
/// numbers by a multiplicative hash, the last value tried first.
#[derive(Default)]
struct WordTable {
    /// Entry number + 1 per slot (0: empty); a power of two, at most half full.
    slots: Vec<u32>,
    keys: Vec<u64>,
    last: Option<(u64, u32)>,
}

impl WordTable {
    /// The entry of `key` (value `i`), added (and its first value noted in `first`) if new.
    #[inline(always)]
    fn find_or_add(&mut self, key: u64, i: u32, first: &mut Vec<u32>) -> u32 {
        if let Some((k, e)) = self.last {
            if k == key {
                return e;
            }
        }
        if self.keys.len() * 2 >= self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = word_hash(key) & mask;
        let e = loop {
            let e = self.slots[at];
            if e == 0 {
                self.keys.push(key);
                first.push(i);
                self.slots[at] = self.keys.len() as u32;
                break self.keys.len() as u32 - 1;
            }
            if self.keys[e as usize - 1] == key {
                break e - 1;
            }
            at = (at + 1) & mask;
        };
        self.last = Some((key, e));
        e
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(64);
        self.slots = vec![0; size];
        let mask = size - 1;
        for (i, &k) in self.keys.iter().enumerate() {
            let mut at = word_hash(k) & mask;
            while self.slots[at] != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = i as u32 + 1;
        }
    }
}

/// A number's bits mixed so that its low bits depend on all of them (doubles such as 1920.0
/// have dozens of zero low bits).
#[inline(always)]
fn word_hash(k: u64) -> usize {
    fmix(k) as usize
}

/// Definition levels of rows `r0..r1`, of which `rows` (ascending, within the range) have a
/// value: the RLE / bit-packed hybrid with bit width 1.
fn def_levels(out: &mut Vec<u8>, rows: &[u32], r0: usize, r1: usize) {
    let n = r1 - r0;
    if rows.len() == n {
        run(out, n, 1);
        return;
    }
    if rows.is_empty() {
        run(out, n, 0);
        return;
    }
    // Runs where the values are few or bunched; else one bit-packed run (a bitmap).
    let stretches = 1 + rows.windows(2).filter(|w| w[1] != w[0] + 1).count();
    if stretches * 6 < n / 8 + 8 {
        let mut next = r0;
        let mut i = 0;
        while i < rows.len() {
            let row = rows[i] as usize;
            if row > next {
                run(out, row - next, 0);
            }
            let mut len = 1;
            while i + len < rows.len() && rows[i + len] as usize == row + len {
                len += 1;
            }
            run(out, len, 1);
            next = row + len;
            i += len;
        }
        if r1 > next {
            run(out, r1 - next, 0);
        }
        return;
    }
    let groups = n.div_ceil(8);
    varint(out, ((groups as u64) << 1) | 1);
    let at = out.len();
    out.resize(at + groups, 0);
    let bitmap = &mut out[at..];
    for &r in rows {
        let r = r as usize - r0;
        bitmap[r / 8] |= 1 << (r % 8);
    }
}

/// Appends `vals` (each below `2^width`) as the RLE / bit-packed hybrid: runs of eight or
/// more equal values as RLE runs, the rest bit-packed in groups of eight.
fn hybrid(out: &mut Vec<u8>, vals: &[u32], width: u8) {
    let n = vals.len();
    let (mut pend_start, mut pend_len) = (0usize, 0usize);
    let mut i = 0;
    while i < n {
        // No run of eight starts at `i` unless `vals[i + 7]` equals `vals[i]`, nor at
        // `i + 1..=i + 7` unless it equals `vals[i + 8]` (such a run covers both): when it
        // equals neither, the eight values join what is pending at once, not one by one.
        if let Some(&[first, .., seventh, eighth]) = vals.get(i..i + 9) {
            if seventh != first && seventh != eighth {
                if pend_len == 0 {
                    pend_start = i;
                }
                pend_len += 8;
                i += 8;
                continue;
            }
        }
        let v = vals[i];
        let mut j = i + 1;
        while j < n && vals[j] == v {
            j += 1;
        }
        let run_len = j - i;
        if run_len >= 8 {
            // What is pending is completed to whole groups of eight from this run.
            let fill = (8 - pend_len % 8) % 8;
            if pend_len == 0 {
                pend_start = i;
            }
            pend_len += fill;
            bit_packed(out, &vals[pend_start..pend_start + pend_len], width);
            let rest = run_len - fill;
            if rest >= 8 {
                rle(out, rest, v, width);
                pend_len = 0;
            } else {
                pend_start = i + fill;
                pend_len = rest;
            }
        } else {
            if pend_len == 0 {
                pend_start = i;
            }
            pend_len += run_len;
        }
        i = j;
    }
    bit_packed(out, &vals[pend_start..pend_start + pend_len], width);
}

/// A bit-packed run of `vals`, padded with zeros to a whole group of eight.
fn bit_packed(out: &mut Vec<u8>, vals: &[u32], width: u8) {
    if vals.is_empty() {
        return;
    }
    let groups = vals.len().div_ceil(8);
    varint(out, ((groups as u64) << 1) | 1);
    if width == 0 {
        return;
    }
    let w = width as usize;
    out.reserve(groups * w);
    let (whole, rest) = vals.as_chunks::<8>();
    // The last group padded with zeros.
    let mut last = [0u32; 8];
    last[..rest.len()].copy_from_slice(rest);
    let padded = (!rest.is_empty()).then_some(&last);
    for group in whole.iter().chain(padded) {
        if w <= 16 {
            // A group of eight takes `w` bytes, at most sixteen: built in one number and
            // written at once, rather than a byte at a time as the bits fill up.
            out.extend_from_slice(&pack(group, w).to_le_bytes()[..w]);
        } else {
            pack_wide(out, group, w);
        }
    }
}

/// Eight values of at most `w` (≤ 16) bits each, packed from the lowest bit up (in a
/// 64-bit number when they fit one: 128-bit shifts take several instructions each).
#[inline(always)]
fn pack(group: &[u32; 8], w: usize) -> u128 {
    let fold = |g: &[u32]| {
        g.iter()
            .enumerate()
            .fold(0u64, |acc, (k, &v)| acc | (u64::from(v) << (k * w)))
    };
    if w <= 8 {
        return u128::from(fold(group));
    }
    u128::from(fold(&group[..4])) | (u128::from(fold(&group[4..])) << (4 * w))
}

/// Eight values of more than sixteen bits each, a byte at a time.
fn pack_wide(out: &mut Vec<u8>, group: &[u32; 8], w: usize) {
    let mut acc: u64 = 0;
    let mut bits = 0usize;
    for &v in group {
        acc |= u64::from(v) << bits;
        bits += w;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
}

/// An RLE run of `len` times `v`, the value in whole bytes.
fn rle(out: &mut Vec<u8>, len: usize, v: u32, width: u8) {
    varint(out, (len as u64) << 1);
    let bytes = (width as usize).div_ceil(8);
    out.extend_from_slice(&v.to_le_bytes()[..bytes]);
}

/// One RLE run of `len` levels of `value` (bit width 1: the value takes one byte).
fn run(out: &mut Vec<u8>, len: usize, value: u8) {
    varint(out, (len as u64) << 1);
    out.push(value);
}

fn varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// A data page's bounds, nulls, and whether it has values at all.
struct PageBound<'a> {
    bound: Bound<'a>,
    nulls: u64,
    values: bool,
}

/// The column index: per page, a null page or its bounds (cut as the statistics are), and
/// whether the pages' bounds ascend or descend (null pages aside). None when a page with
/// values has no bounds (all NaN), as parquet's writer does.
fn column_index(t: PhysicalType, pages: &[PageBound<'_>]) -> Result<Option<ColumnIndexMetaData>> {
    let mut index = ColumnIndexBuilder::new(t);
    let (mut asc, mut desc) = (true, true);
    let mut prev: Option<&Bound<'_>> = None;
    for p in pages {
        let nulls = i64::try_from(p.nulls).map_err(|e| internal("a page's nulls", e))?;
        if !p.values {
            index.append(true, Vec::new(), Vec::new(), nulls);
            continue;
        }
        let Some((min, max)) = p.bound.index_bytes() else {
            return Ok(None);
        };
        index.append(false, min, max, nulls);
        if let Some(prev) = prev {
            let (a, d) = prev.order(&p.bound);
            asc &= a;
            desc &= d;
        }
        prev = Some(&p.bound);
    }
    index.set_boundary_order(if asc {
        BoundaryOrder::ASCENDING
    } else if desc {
        BoundaryOrder::DESCENDING
    } else {
        BoundaryOrder::UNORDERED
    });
    index
        .build()
        .map(Some)
        .map_err(|e| internal("a column chunk's column index", e))
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

/// The sink thread's Snappy encoder and its output buffer, kept from page to page: a new
/// buffer per page (what `compress_vec` makes) was zeroed at its largest size each time.
struct Snappy {
    encoder: snap::raw::Encoder,
    out: Vec<u8>,
}

thread_local! {
    static SNAPPY: std::cell::RefCell<Snappy> = std::cell::RefCell::new(Snappy {
        encoder: snap::raw::Encoder::new(),
        out: Vec::new(),
    });
}

fn compress(body: Vec<u8>, codec: Compression) -> Result<Vec<u8>> {
    match codec {
        Compression::UNCOMPRESSED => Ok(body),
        Compression::SNAPPY => SNAPPY.with(|z| {
            let z = &mut *z.borrow_mut();
            let max = snap::raw::max_compress_len(body.len());
            if z.out.len() < max {
                z.out.resize(max, 0);
            }
            let n = z
                .encoder
                .compress(&body, &mut z.out)
                .map_err(|e| internal("compressing a column chunk", e))?;
            Ok(z.out[..n].to_vec())
        }),
        Compression::ZSTD(level) => zstd::bulk::compress(&body, level.compression_level())
            .map_err(|e| internal("compressing a column chunk", e)),
        other => Err(EngineError::Internal(format!(
            "column chunks are not written with {other}"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_bounds_leave_nan_out_at_every_length_and_place() {
        let specials = [
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.5,
            2.25,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..24 {
            for round in 0..40 {
                let xs: Vec<f64> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if round % 2 == 0 {
                            specials[(x % specials.len() as u64) as usize]
                        } else {
                            (x % 2001) as f64 / 8.0 - 125.0
                        }
                    })
                    .collect();
                let numbers: Vec<f64> = xs.iter().copied().filter(|v| !v.is_nan()).collect();
                match f64_bound(&xs) {
                    Bound::None => assert!(numbers.is_empty(), "{xs:?}"),
                    Bound::F64(min, max) => {
                        assert!(!min.is_nan() && !max.is_nan(), "{xs:?}");
                        assert!(numbers.iter().all(|&v| min <= v && v <= max), "{xs:?}");
                        assert!(numbers.contains(&min) && numbers.contains(&max), "{xs:?}");
                    }
                    other => panic!("{other:?} for {xs:?}"),
                }
            }
        }
    }

    #[test]
    fn words_hold_their_bytes_and_zeros_past_them_at_every_length_and_place() {
        let b: Vec<u8> = (1..=40u8).map(|c| c.wrapping_mul(37) | 1).collect();
        for at in 0..b.len() {
            for len in 0..=8 {
                let want = b[at..]
                    .iter()
                    .take(len)
                    .enumerate()
                    .fold(0u64, |w, (i, &c)| w | (c as u64) << (8 * i));
                assert_eq!(word(&b, at, len), want, "{len} bytes at {at}");
            }
        }
        // A length past a word takes the word.
        assert_eq!(word(&b, 0, 12), word(&b, 0, 8));
    }

    /// Decodes the hybrid with bit width `w`, `n` values.
    fn unhybrid(mut b: &[u8], w: u8, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let varint = |b: &mut &[u8]| {
            let (mut x, mut s) = (0u64, 0);
            loop {
                let c = b[0];
                *b = &b[1..];
                x |= ((c & 0x7f) as u64) << s;
                s += 7;
                if c < 0x80 {
                    return x;
                }
            }
        };
        while out.len() < n {
            let h = varint(&mut b);
            if h & 1 == 1 {
                let groups = (h >> 1) as usize;
                let mut acc = 0u64;
                let mut bits = 0;
                let mut k = 0;
                let mut vals = Vec::new();
                while vals.len() < groups * 8 {
                    while bits < w as u32 {
                        acc |= (b.get(k).copied().unwrap_or(0) as u64) << bits;
                        bits += 8;
                        k += 1;
                    }
                    vals.push((acc & ((1u64 << w) - 1)) as u32);
                    acc >>= w;
                    bits -= w as u32;
                }
                b = &b[groups * w as usize..];
                out.extend(vals);
            } else {
                let len = (h >> 1) as usize;
                let nb = (w as usize).div_ceil(8);
                let mut v = [0u8; 4];
                v[..nb].copy_from_slice(&b[..nb]);
                b = &b[nb..];
                out.extend(std::iter::repeat_n(u32::from_le_bytes(v), len));
            }
        }
        out.truncate(n);
        out
    }

    /// [`hybrid`] written from its rule alone, run by run (`chunk_by`): a run of eight or
    /// more takes what is pending up to a whole group of eight, and the rest of it, if eight
    /// or more, is an RLE run; everything else is bit-packed.
    fn hybrid_one_by_one(out: &mut Vec<u8>, vals: &[u32], width: u8) {
        let mut pending = 0..0;
        let mut at = 0;
        for run in vals.chunk_by(|a, b| a == b) {
            let len = run.len();
            if len >= 8 {
                let fill = (8 - pending.len() % 8) % 8;
                let packed = pending.start..pending.end + fill;
                bit_packed(out, &vals[packed], width);
                pending = at + fill..at + fill;
                if len - fill >= 8 {
                    rle(out, len - fill, run[0], width);
                    pending = at + len..at + len;
                } else {
                    pending.end = at + len;
                }
            } else {
                pending.end = at + len;
            }
            at += len;
        }
        bit_packed(out, &vals[pending], width);
    }

    #[test]
    fn the_hybrid_reads_back_whatever_the_runs() {
        let mut cases: Vec<Vec<u32>> = vec![
            vec![],
            vec![3],
            vec![1, 2, 3, 4, 5, 6, 7],
            vec![5; 30],
            [vec![1, 2, 3], vec![7; 20], vec![1, 2]].concat(),
            [
                vec![0; 9],
                vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
                vec![2; 8],
                vec![3; 7],
            ]
            .concat(),
            (0..1000).map(|i| (i * 7919 % 13) as u32).collect(),
            (0..1000).map(|i| (i / 37) as u32).collect(),
            // Wider than sixteen bits, and every count of values in a last group.
            (0..1003)
                .map(|i| (i * 104_729 % (1 << 20)) as u32)
                .collect(),
            (0..13).map(|i| u32::MAX - i).collect(),
        ];
        // Runs of every length from 1 to 19 starting anywhere, of few values and of many.
        let mut x = 12345u64;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        for alphabet in [2, 3, 5, 1000] {
            let mut vals = Vec::new();
            while vals.len() < 3000 {
                let (v, len) = (next(alphabet) as u32, 1 + next(19) as usize);
                vals.extend(std::iter::repeat_n(v, len));
            }
            cases.push(vals);
        }
        for vals in cases {
            let max = vals.iter().copied().max().unwrap_or(0);
            let w = (32 - max.leading_zeros()) as u8;
            for w in [w, (w + 3).min(32), w.max(16), w.max(17), 32] {
                let mut out = Vec::new();
                hybrid(&mut out, &vals, w);
                assert_eq!(unhybrid(&out, w, vals.len()), vals, "width {w}");
                // Runs found eight values a step where they cannot start are the runs found
                // value by value: the same bytes.
                let mut slow = Vec::new();
                hybrid_one_by_one(&mut slow, &vals, w);
                assert_eq!(out, slow, "width {w}");
            }
        }
        // One entry: width 0, nothing but headers.
        let mut out = Vec::new();
        hybrid(&mut out, &[0; 100], 0);
        assert_eq!(unhybrid(&out, 0, 100), vec![0; 100]);
    }

    #[test]
    fn dictionaries_number_each_distinct_string_once() {
        // Short, long, empty, prefixes of each other, equal but for the length, many.
        let mut vals: Vec<String> = ["", "a", "a\0", "abcdefgh", "abcdefghi", "abcdefgh"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        vals.extend((0..300).map(|i| format!("https://example.com/{}?x={}", i % 7, i % 120)));
        vals.extend((0..50).map(|i| "é".repeat(i % 9)));
        // Long values alike but for one byte, somewhere in their first or last sixteen.
        for len in [17, 24, 31, 32, 33, 48] {
            for at in [0, 8, 15, 16, len - 1] {
                let mut v = vec![b'x'; len];
                v[at] = b'y';
                vals.push(String::from_utf8(v.clone()).unwrap());
                vals.push(String::from_utf8(v).unwrap());
            }
        }
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for v in &vals {
            bytes.extend_from_slice(v.as_bytes());
            ends.push(bytes.len() as i32);
        }
        let v = Vals::Str {
            bytes: &bytes,
            ends: &ends,
        };
        let d = Dict::build(&v).unwrap();
        // Each value's entry holds that value, and entries are distinct.
        for (i, &e) in d.idx.iter().enumerate() {
            let first = d.first[e as usize] as usize;
            assert_eq!(vals[first], vals[i], "value {i}");
        }
        let mut distinct: Vec<&String> = vals.iter().collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(d.first.len(), distinct.len());
        // The bounds of the whole chunk, and of parts of it (as pages are), come from the
        // entries met.
        let mut seen = Vec::new();
        match d.bound(&v, &d.idx, &mut seen) {
            Bound::Str(min, max) => {
                assert_eq!(min, distinct[0].as_bytes());
                assert_eq!(max, distinct[distinct.len() - 1].as_bytes());
            }
            b => panic!("{b:?}"),
        }
        for (from, to) in [(0, 1), (1, 5), (6, 306), (100, 200), (300, vals.len())] {
            let part: Vec<&String> = vals[from..to].iter().collect();
            let (min, max) = (part.iter().min().unwrap(), part.iter().max().unwrap());
            match d.bound(&v, &d.idx[from..to], &mut seen) {
                Bound::Str(lo, hi) => {
                    assert_eq!((lo, hi), (min.as_bytes(), max.as_bytes()), "{from}..{to}")
                }
                b => panic!("{from}..{to}: {b:?}"),
            }
        }
    }

    /// Plain strings' bounds, compared by their first eight bytes as a number and the rest
    /// on a tie, agree with comparing the bytes, for values short and long, empty, sharing
    /// their first eight bytes, above 0x7F, and last in the buffer (no eight bytes after).
    #[test]
    fn plain_string_bounds_order_as_bytes_do() {
        let mut vals: Vec<Vec<u8>> = ["", "a", "a\0", "abcdefgh", "abcdefgh\0", "abcdefghi"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        vals.extend([b"\xff".to_vec(), b"\x7f\xff".to_vec(), b"\x80".to_vec()]);
        vals.extend((0..200).map(|i| format!("user-{}", (i * 7919) % 1000).into_bytes()));
        vals.extend((0..40).map(|i| "é".repeat(i % 11).into_bytes()));
        vals.push(b"zz".to_vec());
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for v in &vals {
            bytes.extend_from_slice(v);
            ends.push(bytes.len() as i32);
        }
        let v = Vals::Str {
            bytes: &bytes,
            ends: &ends,
        };
        let n = vals.len();
        for (from, to) in [
            (0, n),
            (0, 1),
            (1, 6),
            (3, 9),
            (6, 9),
            (9, 209),
            (200, n),
            (n - 1, n),
        ] {
            let part = &vals[from..to];
            let (min, max) = (part.iter().min().unwrap(), part.iter().max().unwrap());
            match v.bound(from..to) {
                Bound::Str(lo, hi) => {
                    assert_eq!((lo, hi), (&min[..], &max[..]), "{from}..{to}")
                }
                b => panic!("{from}..{to}: {b:?}"),
            }
        }
    }

    #[test]
    fn a_column_of_distinct_values_goes_plain_after_the_trial() {
        let n = DICTIONARY_TRIAL * 2;
        let strings = |f: &dyn Fn(usize) -> String| {
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            for i in 0..n {
                bytes.extend_from_slice(f(i).as_bytes());
                ends.push(bytes.len() as i32);
            }
            (bytes, ends)
        };
        // Ids: every value new. Plain, though the dictionary would fit in its budget.
        let (b, e) = strings(&|i| format!("{i:08x}"));
        assert!(12 * n < DICTIONARY_BYTES);
        assert!(Dict::build(&Vals::Str {
            bytes: &b,
            ends: &e
        })
        .is_none());
        let times: Vec<i64> = (0..n as i64).map(|i| 1_700_000_000_000 + i).collect();
        assert!(Dict::build(&Vals::I64(&times)).is_none());
        // Many distinct values but repeats among the first ones: kept.
        let (b, e) = strings(&|i| format!("user-{}", (i * 7919) % 5000));
        let d = Dict::build(&Vals::Str {
            bytes: &b,
            ends: &e,
        })
        .unwrap();
        assert_eq!(d.first.len(), 5000);
        let prices: Vec<f64> = (0..n).map(|i| (i % 300) as f64 / 4.0).collect();
        assert_eq!(Dict::build(&Vals::F64(&prices)).unwrap().first.len(), 300);
    }

    #[test]
    fn definition_levels_read_back_as_runs_or_a_bitmap() {
        for (rows, n) in [
            (vec![0u32, 1, 2, 3], 4usize),
            (vec![], 10),
            (vec![5, 900], 1000),
            ((0..1000).filter(|r| r % 3 != 0).collect(), 1000),
            ((0..1000).filter(|r| r % 100 < 50).collect(), 1000),
        ] {
            let mut out = Vec::new();
            def_levels(&mut out, &rows, 0, n);
            let levels = unhybrid(&out, 1, n);
            let expected: Vec<u32> = (0..n as u32)
                .map(|r| u32::from(rows.contains(&r)))
                .collect();
            assert_eq!(levels, expected);
        }
    }
}
