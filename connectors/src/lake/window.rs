//! One (table, `mp_date`) window: rows buffered column by column, then encoded to a Parquet
//! file a row group at a time.
//!
//! A column holds only its values and the rows they belong to, never its nulls. A table may
//! have thousands of properties of which an event fills a few dozen: padding every column to
//! every row made memory (and the work of the allocator and the kernel behind it) grow with
//! rows times columns. Nulls are written only when a row group is encoded, one column at a
//! time, so a window costs its values, and the encoding one column of padding at once.

use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, BooleanBufferBuilder, BooleanBuilder, Float64Builder, StringArray,
    TimestampMicrosecondBuilder,
};
use arrow::array::{ArrowPrimitiveType, PrimitiveBuilder};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

#[cfg(test)]
use sluice_engine::batch::Value;
use sluice_engine::batch::{Events, Frag, FragValues, Position, Texts, ValueRef};
use sluice_engine::component::TableDef;
use sluice_engine::{EngineError, Result, TypeClass};

use super::chunk::Chunk;
use super::file::OpenFile;

/// The Arrow type of a column class; `time` is TIMESTAMP(MICROS, UTC) (SPEC §12 D2).
pub fn arrow_type(class: TypeClass) -> DataType {
    match class {
        TypeClass::String => DataType::Utf8,
        TypeClass::Number => DataType::Float64,
        TypeClass::Boolean => DataType::Boolean,
        TypeClass::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The Arrow schema of a table's files (without the `mp_date` partition column).
pub fn arrow_schema(def: &TableDef) -> SchemaRef {
    Arc::new(Schema::new(
        def.columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.class), true))
            .collect::<Vec<_>>(),
    ))
}

/// A column's values, without nulls.
enum Values {
    /// The values' bytes one after another, and where each ends.
    Str {
        bytes: Vec<u8>,
        ends: Vec<i32>,
    },
    Num(Vec<f64>),
    Bool(Vec<bool>),
    Time(Vec<i64>),
}

/// Values a column starts with room for, before it has a history.
const FIRST_VALUES: usize = 16;
/// Bytes per string value a column starts with room for, before it has a history.
const FIRST_VALUE_BYTES: usize = 8;
/// The room (values, bytes of strings) of a column without a history.
const FIRST_ROOM: (usize, usize) = (FIRST_VALUES, FIRST_VALUES * FIRST_VALUE_BYTES);

struct Column {
    /// The row of each value, ascending.
    rows: Vec<u32>,
    values: Values,
}

impl Column {
    /// A column with room for `n` values (and `bytes` bytes of strings) before it grows.
    fn new(class: TypeClass, n: usize, bytes: usize) -> Self {
        let values = match class {
            TypeClass::String => Values::Str {
                bytes: Vec::with_capacity(bytes),
                ends: Vec::with_capacity(n),
            },
            TypeClass::Number => Values::Num(Vec::with_capacity(n)),
            TypeClass::Boolean => Values::Bool(Vec::with_capacity(n)),
            TypeClass::Timestamp => Values::Time(Vec::with_capacity(n)),
        };
        Column {
            rows: Vec::with_capacity(n),
            values,
        }
    }

    fn push_str(&mut self, row: usize, s: &str) -> Result<()> {
        match &mut self.values {
            Values::Str { bytes, ends } => {
                bytes.extend_from_slice(s.as_bytes());
                ends.push(end_of(bytes)?);
            }
            _ => {
                return Err(EngineError::Internal(
                    "a string for a non-string column".into(),
                ))
            }
        }
        self.rows.push(row as u32);
        Ok(())
    }

    /// Appends `v`; returns the bytes it holds.
    #[cfg(test)]
    fn push(&mut self, row: usize, v: &Value) -> Result<usize> {
        if let Some(s) = v.text() {
            self.push_str(row, s)?;
            return Ok(s.len() + 8);
        }
        let size = match (&mut self.values, v) {
            (Values::Num(xs), Value::Number(n)) => {
                xs.push(*n);
                12
            }
            (Values::Bool(xs), Value::Bool(b)) => {
                xs.push(*b);
                5
            }
            _ => {
                return Err(EngineError::Internal(format!(
                    "value {v:?} does not fit its column's type"
                )))
            }
        };
        self.rows.push(row as u32);
        Ok(size)
    }

    #[cfg(test)]
    fn push_time(&mut self, row: usize, us: i64) -> Result<()> {
        match &mut self.values {
            Values::Time(xs) => xs.push(us),
            _ => {
                return Err(EngineError::Internal(
                    "time column is not a timestamp".into(),
                ))
            }
        }
        self.rows.push(row as u32);
        Ok(())
    }

    /// Appends times, the first at window row `row` and each next one in the next row.
    fn extend_time(&mut self, times: &[i64], row: u32) -> Result<()> {
        match &mut self.values {
            Values::Time(xs) => xs.extend_from_slice(times),
            _ => {
                return Err(EngineError::Internal(
                    "time column is not a timestamp".into(),
                ))
            }
        }
        self.rows.extend(row..row + times.len() as u32);
        Ok(())
    }

    /// Appends distinct ids `v0..v1` (of the events `rows`), at window rows `rows + delta`;
    /// returns the bytes they hold.
    fn extend_ids(
        &mut self,
        rows: &[u32],
        ids: &Texts,
        v0: usize,
        v1: usize,
        delta: u32,
    ) -> Result<usize> {
        let Values::Str { bytes, ends } = &mut self.values else {
            return Err(EngineError::Internal(
                "distinct_id column is not a string".into(),
            ));
        };
        let held = extend_text(bytes, ends, ids, v0, v1)?;
        self.rows
            .extend(rows[v0..v1].iter().map(|&r| r.wrapping_add(delta)));
        Ok(held - 8 * (v1 - v0))
    }

    /// Appends values `v0..v1` of `frag`, value `i` at window row `frag.rows[i] + delta`
    /// (wrapping: `delta` may be "negative"); returns the bytes they hold.
    fn extend(&mut self, frag: &Frag, v0: usize, v1: usize, delta: u32) -> Result<usize> {
        let n = v1 - v0;
        let bytes = match (&mut self.values, &frag.values) {
            (Values::Str { bytes, ends }, FragValues::Text(t)) => {
                extend_text(bytes, ends, t, v0, v1)?
            }
            (Values::Num(xs), FragValues::Num(v)) => {
                xs.extend_from_slice(&v[v0..v1]);
                12 * n
            }
            (Values::Bool(xs), FragValues::Bool(v)) => {
                xs.extend_from_slice(&v[v0..v1]);
                5 * n
            }
            _ => {
                return Err(EngineError::Internal(format!(
                    "values of {} do not fit their column's type",
                    frag.name.raw()
                )))
            }
        };
        self.rows
            .extend(frag.rows[v0..v1].iter().map(|&r| r.wrapping_add(delta)));
        Ok(bytes)
    }

    /// The column as an Arrow array of `rows` rows, nulls where it has no value.
    fn into_array(self, rows: usize) -> Result<ArrayRef> {
        let at = &self.rows;
        match self.values {
            Values::Str { bytes, ends } => {
                // The bytes as they are, with an offset per row (a null ends where the row
                // before it did) and the nulls as a bitmap: no value is copied again.
                let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
                offsets.push(0);
                let mut last = 0;
                for (&row, &end) in at.iter().zip(&ends) {
                    if offsets.len() > row as usize + 1 {
                        return Err(EngineError::Internal(format!(
                            "a string column has two values in row {row}"
                        )));
                    }
                    offsets.resize(row as usize + 1, last);
                    last = end;
                    offsets.push(last);
                }
                offsets.resize(rows + 1, last);
                let nulls = (at.len() < rows).then(|| {
                    let mut valid = BooleanBufferBuilder::new(rows);
                    valid.append_n(rows, false);
                    for &row in at {
                        valid.set_bit(row as usize, true);
                    }
                    NullBuffer::new(valid.finish())
                });
                // `try_new` would check every offset and the UTF-8 of all the bytes again: a
                // cost per row and column, which in a wide table of mostly null columns was 8%
                // of the run.
                // SAFETY: `bytes` is whole `&str` values one after another, so it is UTF-8 and
                // each value's end is a char boundary; the offsets are 0, then those ends in
                // order (rows ascend: a row met twice was refused above), repeated across
                // nulls, so they never decrease and the last is `bytes.len()`; there are
                // `rows + 1` of them, and the null buffer (when present) has `rows` bits.
                let array = unsafe {
                    StringArray::new_unchecked(
                        OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                        Buffer::from_vec(bytes),
                        nulls,
                    )
                };
                #[cfg(debug_assertions)]
                arrow::array::Array::to_data(&array)
                    .validate_full()
                    .map_err(|e| EngineError::Internal(format!("a string column: {e}")))?;
                Ok(Arc::new(array))
            }
            Values::Num(xs) => Ok(primitive(
                Float64Builder::with_capacity(rows),
                &xs,
                at,
                rows,
            )),
            Values::Bool(xs) => {
                let mut b = BooleanBuilder::with_capacity(rows);
                fill(
                    &mut b,
                    at,
                    rows,
                    |b, i| b.append_value(xs[i]),
                    |b, n| b.append_nulls(n),
                );
                Ok(Arc::new(b.finish()))
            }
            Values::Time(xs) => Ok(primitive(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
                &xs,
                at,
                rows,
            )),
        }
    }
}

/// Walks the values in row order, with the nulls before each.
fn fill<B>(
    b: &mut B,
    at: &[u32],
    rows: usize,
    mut value: impl FnMut(&mut B, usize),
    nulls: impl Fn(&mut B, usize),
) {
    let mut len = 0;
    for (i, &row) in at.iter().enumerate() {
        let row = row as usize;
        if row > len {
            nulls(b, row - len);
        }
        value(b, i);
        len = row + 1;
    }
    if rows > len {
        nulls(b, rows - len);
    }
}

/// A number or time column: its values in row order, with the nulls before each.
fn primitive<T: ArrowPrimitiveType>(
    mut b: PrimitiveBuilder<T>,
    xs: &[T::Native],
    at: &[u32],
    rows: usize,
) -> ArrayRef {
    fill(
        &mut b,
        at,
        rows,
        |b, i| b.append_value(xs[i]),
        |b, n| b.append_nulls(n),
    );
    Arc::new(b.finish())
}

/// Room for `n` and a quarter more.
fn with_headroom(n: usize) -> usize {
    n.saturating_add(n / 4)
}

/// Where the value just appended ends: Arrow's string offsets are `i32`.
fn end_of(bytes: &[u8]) -> Result<i32> {
    end_of_len(bytes.len())
}

fn end_of_len(len: usize) -> Result<i32> {
    i32::try_from(len).map_err(|_| {
        EngineError::Internal("a column's values passed 2 GiB in one row group".into())
    })
}

/// Texts `v0..v1` of `t` appended to a column's bytes and ends, in one copy; the bytes they
/// hold (with 8 per value for its end and row).
fn extend_text(
    bytes: &mut Vec<u8>,
    ends: &mut Vec<i32>,
    t: &Texts,
    v0: usize,
    v1: usize,
) -> Result<usize> {
    if v0 == v1 {
        return Ok(0);
    }
    let from = if v0 == 0 {
        0
    } else {
        t.ends()[v0 - 1] as usize
    };
    let to = t.ends()[v1 - 1] as usize;
    let base = end_of(bytes)?;
    end_of_len(bytes.len() + (to - from))?;
    bytes.extend_from_slice(&t.bytes().as_bytes()[from..to]);
    let shift = base - from as i32;
    ends.extend(t.ends()[v0..v1].iter().map(|&e| e as i32 + shift));
    Ok(to - from + 8 * (v1 - v0))
}

/// Which events of a batch go to a window: all of them, or these runs of rows (half-open,
/// ascending, not empty).
#[derive(Clone, Copy)]
pub enum Pick<'a> {
    All,
    Runs(&'a [(u32, u32)]),
}

/// Rows taken from a window for one row group: each column becomes an Arrow array only when
/// asked, so that an encoder can hold one column's nulls at a time.
pub struct Rows {
    pub schema: SchemaRef,
    pub rows: usize,
    columns: Vec<Option<Column>>,
}

/// Values of a column looked at to judge whether they repeat.
const SAMPLE: usize = 1024;
/// A column with fewer values than this in a file's first row group goes without a
/// dictionary: Parquet's dictionary encoder starts every column of every row group with a
/// hash table of 4,096 entries, and a few values cannot repay it. In a wide table of mostly
/// empty columns those tables were a tenth of the run.
const MIN_DICTIONARY_VALUES: usize = 64;

impl Column {
    /// Whether a dictionary would pay: enough values, and the first of them (up to
    /// [`SAMPLE`]) not nearly all distinct (under 9 in 10).
    fn wants_dictionary(&self) -> bool {
        if self.rows.len() < MIN_DICTIONARY_VALUES {
            return false;
        }
        let n = self.rows.len().min(SAMPLE);
        let hasher = foldhash::fast::FixedState::default();
        let mut seen: std::collections::HashSet<u64, foldhash::fast::FixedState> =
            std::collections::HashSet::with_capacity_and_hasher(n, Default::default());
        match &self.values {
            Values::Str { bytes, ends } => {
                let mut start = 0;
                for &end in &ends[..n] {
                    let end = end as usize;
                    seen.insert(hasher.hash_one(&bytes[start..end]));
                    start = end;
                }
            }
            Values::Num(xs) => seen.extend(xs[..n].iter().map(|x| x.to_bits())),
            Values::Time(xs) => seen.extend(xs[..n].iter().map(|&x| x as u64)),
            Values::Bool(_) => return true,
        }
        seen.len() * 10 < n * 9
    }
}

/// A column's values, lent to an encoder.
#[derive(Clone, Copy)]
pub enum ValuesRef<'a> {
    /// The values' bytes one after another, and where each ends.
    Str {
        bytes: &'a [u8],
        ends: &'a [i32],
    },
    Num(&'a [f64]),
    Bool(&'a [bool]),
    Time(&'a [i64]),
}

/// A column with at most one value in this many rows of a row group is sparse: it gets no
/// dictionary (a few values cannot repay one), and its definition levels are runs.
pub const SPARSE_RATIO: usize = 64;

impl Rows {
    /// The columns a dictionary would not pay for, judged on these rows: values that look
    /// unique (ids, times, URLs), columns with few values or none, and sparse columns (their
    /// chunks are plain; a column sparse in a file's first row group is likely sparse in the
    /// next, and a dictionary's hash table would be started for it in any that is not).
    pub fn plain_columns(&self) -> Vec<usize> {
        (0..self.schema.fields().len())
            .filter(|&i| {
                self.is_sparse(i)
                    || !self
                        .columns
                        .get(i)
                        .and_then(Option::as_ref)
                        .is_some_and(Column::wants_dictionary)
            })
            .collect()
    }

    /// Whether column `i` is sparse: at most one value in [`SPARSE_RATIO`] rows, or none.
    pub fn is_sparse(&self, i: usize) -> bool {
        match self.columns.get(i).and_then(Option::as_ref) {
            None => true,
            Some(c) => c.rows.len() * SPARSE_RATIO <= self.rows,
        }
    }

    /// Column `i`'s rows and values, for an encoder. Ask before [`Rows::take_array`], which
    /// gives the values up.
    pub fn chunk(&self, i: usize) -> Chunk<'_> {
        match self.columns.get(i).and_then(Option::as_ref) {
            None => Chunk {
                rows: &[],
                values: None,
            },
            Some(c) => Chunk {
                rows: &c.rows,
                values: Some(match &c.values {
                    Values::Str { bytes, ends } => ValuesRef::Str { bytes, ends },
                    Values::Num(xs) => ValuesRef::Num(xs),
                    Values::Bool(xs) => ValuesRef::Bool(xs),
                    Values::Time(xs) => ValuesRef::Time(xs),
                }),
            },
        }
    }

    /// Column `i` as an array (and gives its values up).
    pub fn take_array(&mut self, i: usize) -> Result<ArrayRef> {
        let field = self.schema.fields().get(i).ok_or_else(|| {
            EngineError::Internal(format!("column {i} is not in the row group's schema"))
        })?;
        Ok(match self.columns.get_mut(i).and_then(Option::take) {
            Some(c) => c.into_array(self.rows)?,
            None => new_null_array(field.data_type(), self.rows),
        })
    }

    /// All columns as one record batch.
    pub fn into_batch(mut self) -> Result<RecordBatch> {
        let arrays = (0..self.schema.fields().len())
            .map(|i| self.take_array(i))
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| EngineError::Internal(format!("building a record batch: {e}")))
    }
}

/// Where the system columns of a table are.
#[derive(Clone, Copy, Debug)]
pub struct SystemColumns {
    pub event_name: Option<usize>,
    pub time: usize,
    pub distinct_id: usize,
}

impl SystemColumns {
    pub fn of(def: &TableDef) -> Result<Self> {
        let find = |n: &str| {
            def.columns
                .iter()
                .position(|c| c.source.is_none() && c.name == n)
        };
        Ok(SystemColumns {
            event_name: find("mp_event_name"),
            time: find("time").ok_or_else(|| {
                EngineError::Internal(format!("table {} has no time column", def.name))
            })?,
            distinct_id: find("distinct_id").ok_or_else(|| {
                EngineError::Internal(format!("table {} has no distinct_id column", def.name))
            })?,
        })
    }
}

/// Rows of one (table, date) buffered for the next file.
pub struct Window {
    pub table_id: i64,
    pub date: i32,
    columns: Vec<Option<Column>>,
    pub rows: usize,
    /// Estimated bytes of the values held.
    pub bytes: usize,
    /// Position of the first row held.
    pub first: Option<Position>,
    /// Files already rolled from this window in the current epoch.
    pub seq: u32,
    /// The file its rows go to once they make a row group.
    pub file: Option<OpenFile>,
    /// Values (and bytes of strings) each column had in the last row group: its room in the
    /// next.
    sizes: Vec<(usize, usize)>,
}

impl Window {
    pub fn new(table_id: i64, date: i32) -> Self {
        Window {
            table_id,
            date,
            columns: Vec::new(),
            rows: 0,
            bytes: 0,
            first: None,
            seq: 0,
            file: None,
            sizes: Vec::new(),
        }
    }

    /// A window whose columns start with `room` (values, bytes) by ordinal, as
    /// [`Window::into_room`] gave it: that of the same window in the last epoch.
    pub fn with_room(table_id: i64, date: i32, room: Vec<(usize, usize)>) -> Self {
        Window {
            sizes: room,
            ..Window::new(table_id, date)
        }
    }

    /// The room its columns had in its last row group, if it made one.
    pub fn into_room(self) -> Option<Vec<(usize, usize)>> {
        (!self.sizes.is_empty()).then_some(self.sizes)
    }

    fn col(&mut self, ordinal: usize, def: &TableDef) -> Result<&mut Column> {
        // Once per value: a column met before in this row group is all that is looked at.
        if matches!(self.columns.get(ordinal), Some(Some(_))) {
            return self.columns[ordinal]
                .as_mut()
                .ok_or_else(|| EngineError::Internal("a column vanished".into()));
        }
        if self.columns.len() <= ordinal {
            self.columns.resize_with(ordinal + 1, || None);
        }
        let class = def.columns.get(ordinal).map(|c| c.class).ok_or_else(|| {
            EngineError::Internal(format!("column {ordinal} unknown in {}", def.name))
        })?;
        let (n, bytes) = self.sizes.get(ordinal).copied().unwrap_or(FIRST_ROOM);
        Ok(self.columns[ordinal].get_or_insert_with(|| Column::new(class, n, bytes)))
    }

    /// Appends the events of `ev` that `pick` names (all of them in table `table`, an index in
    /// `ev.tables`): the system columns, then each fragment's values in its column (`def`
    /// must know them all), in one copy per fragment and run of events. `rows` and `bytes`
    /// grow.
    pub fn append(
        &mut self,
        ev: &Events,
        table: u32,
        pick: Pick<'_>,
        def: &TableDef,
        sys: SystemColumns,
    ) -> Result<()> {
        let all = [(0u32, ev.len() as u32)];
        let runs: &[(u32, u32)] = match pick {
            Pick::All => &all,
            Pick::Runs(r) => r,
        };
        let added: usize = runs.iter().map(|&(a, b)| (b - a) as usize).sum();
        if added == 0 {
            return Ok(());
        }
        if self.first.is_none() {
            self.first = Some(ev.pos[runs[0].0 as usize]);
        }
        // Per run: the window row of its first event, less that event's row in the batch.
        let mut deltas = Vec::with_capacity(runs.len());
        let mut at = self.rows as u32;
        for &(a, b) in runs {
            deltas.push(at.wrapping_sub(a));
            at += b - a;
        }
        let mut bytes = 16 * added;
        if let Some(i) = sys.event_name {
            let cleaned = ev
                .tables
                .get(table as usize)
                .is_some_and(|t| t.cleaned_event_name);
            let col = self.col(i, def)?;
            let mut last: Option<(sluice_engine::NameRef, &str)> = None;
            for (&(a, b), &delta) in runs.iter().zip(&deltas) {
                for r in a..b {
                    let n = ev.name[r as usize];
                    let name = match last {
                        Some((l, s)) if l == n => s,
                        _ => {
                            let s = match (cleaned, n.clean_static()) {
                                (true, Some(c)) => c,
                                _ => n.raw_static(),
                            };
                            last = Some((n, s));
                            s
                        }
                    };
                    bytes += name.len();
                    col.push_str(r.wrapping_add(delta) as usize, name)?;
                }
            }
        }
        {
            let col = self.col(sys.time, def)?;
            for (&(a, b), &delta) in runs.iter().zip(&deltas) {
                col.extend_time(&ev.time_us[a as usize..b as usize], a.wrapping_add(delta))?;
            }
        }
        {
            let col = self.col(sys.distinct_id, def)?;
            for (&(a, b), &delta) in runs.iter().zip(&deltas) {
                let v0 = ev.distinct_rows.partition_point(|&r| r < a);
                let v1 = ev.distinct_rows.partition_point(|&r| r < b);
                bytes += col.extend_ids(&ev.distinct_rows, &ev.distinct_ids, v0, v1, delta)?;
            }
        }
        let mut overflow: Option<usize> = None;
        // Per fragment, whether its values overflow into `mp_properties` (empty: none does).
        let mut overflows: Vec<bool> = Vec::new();
        for (fi, f) in ev.props.iter().enumerate() {
            let Some(c) = f.column_in(table) else {
                continue;
            };
            if c.overflow {
                overflow = Some(c.ordinal as usize);
                if overflows.is_empty() {
                    overflows.resize(ev.props.len(), false);
                }
                overflows[fi] = true;
                continue;
            }
            // The window's column is reached (and made) only when some of its runs have
            // values of the fragment: a batch spread over several windows has most of its
            // sparse fragments in one of them.
            let mut col: Option<&mut Column> = None;
            for (&(a, b), &delta) in runs.iter().zip(&deltas) {
                let v0 = f.rows.partition_point(|&r| r < a);
                let v1 = v0 + f.rows[v0..].partition_point(|&r| r < b);
                if v0 < v1 {
                    let into = match col {
                        Some(into) => into,
                        None => self.col(c.ordinal as usize, def)?,
                    };
                    bytes += into.extend(f, v0, v1, delta)?;
                    col = Some(into);
                }
            }
        }
        if let Some(ordinal) = overflow {
            // `mp_properties`: per event, a JSON object of the overflowing properties'
            // original names and values, in the order they came. Only the events with such a
            // value are looked at, and of their properties only those that overflow are read
            // (past the column limit, reading every property of every event, through a JSON
            // map built per event, made one more event cost 2.5 times as much).
            let mut marked = vec![false; ev.len()];
            for (f, _) in ev.props.iter().zip(&overflows).filter(|(_, &o)| o) {
                for &r in &f.rows {
                    marked[r as usize] = true;
                }
            }
            let col = self.col(ordinal, def)?;
            let mut picked: Vec<(u32, u32)> = Vec::new();
            let mut text = Vec::new();
            for (&(a, b), &delta) in runs.iter().zip(&deltas) {
                for r in a..b {
                    if !marked[r as usize] {
                        continue;
                    }
                    // An event holds a name once (decoders keep a repeated key's last value).
                    picked.clear();
                    picked.extend(
                        ev.get(r as usize)
                            .order()
                            .iter()
                            .filter(|&&(f, _)| overflows[f as usize]),
                    );
                    if picked.is_empty() {
                        continue;
                    }
                    text.clear();
                    overflow_object(&mut text, ev, &picked)?;
                    let text = std::str::from_utf8(&text)
                        .map_err(|e| EngineError::Internal(format!("mp_properties text: {e}")))?;
                    bytes += text.len();
                    col.push_str(r.wrapping_add(delta) as usize, text)?;
                }
            }
        }
        self.rows += added;
        self.bytes += bytes;
        Ok(())
    }

    /// Whether rows held need a new file: the open one's schema lacks columns of a table now
    /// `width` wide (a file's schema is fixed).
    pub fn outgrew_file(&self, width: usize) -> bool {
        self.rows > 0 && self.file.as_ref().is_some_and(|f| f.columns < width)
    }

    /// The rows held, with `def`'s columns, for a row group; empties the window's rows.
    pub fn take_rows(&mut self, def: &TableDef) -> Rows {
        // The next row group is likely alike: each column starts with room for as many values
        // (and bytes) as it had and a quarter more, rather than doubling its way up to them,
        // copying as it goes. Row groups end on a byte budget, so their values vary by a few
        // percent: room for exactly the last count had every other row group copy each column
        // once more, into twice the room, at the size where that costs most (a sixth of W1's
        // CPU went to growing vectors and to the kernel handing out their new pages).
        self.sizes.clear();
        self.sizes.extend(self.columns.iter().map(|c| match c {
            None => FIRST_ROOM,
            Some(c) => {
                let bytes = match &c.values {
                    Values::Str { bytes, .. } => bytes.len(),
                    _ => 0,
                };
                (
                    with_headroom(c.rows.len()).max(FIRST_ROOM.0),
                    with_headroom(bytes).max(FIRST_ROOM.1),
                )
            }
        }));
        let width = self.columns.len();
        let rows = Rows {
            schema: arrow_schema(def),
            rows: self.rows,
            columns: std::mem::take(&mut self.columns),
        };
        // As wide as before from the start, rather than growing column by column again.
        self.columns.resize_with(width, || None);
        self.rows = 0;
        self.bytes = 0;
        self.first = None;
        rows
    }
}

/// `mp_properties`' text for the values `picked` ((fragment, value) pairs): a compact JSON
/// object of their original names and values, as `serde_json` writes one (nested text
/// through its parser, so that it reads as it would in a column of its own).
fn overflow_object(out: &mut Vec<u8>, ev: &Events, picked: &[(u32, u32)]) -> Result<()> {
    let failed = |e: serde_json::Error| EngineError::Internal(format!("mp_properties: {e}"));
    out.push(b'{');
    for (k, &(f, i)) in picked.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let frag = &ev.props[f as usize];
        match &frag.literal_name {
            Some(name) => {
                out.push(b'"');
                out.extend_from_slice(name.as_bytes());
                out.push(b'"');
            }
            None => serde_json::to_writer(&mut *out, frag.name.raw()).map_err(failed)?,
        }
        out.push(b':');
        match frag.value(i as usize) {
            ValueRef::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            // A number that is not finite is `null`, as `serde_json` writes one.
            ValueRef::Num(x) => serde_json::to_writer(&mut *out, &x).map_err(failed)?,
            ValueRef::Str(s) => serde_json::to_writer(&mut *out, s).map_err(failed)?,
            ValueRef::Json(s) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(v) => serde_json::to_writer(&mut *out, &v).map_err(failed)?,
                Err(_) => serde_json::to_writer(&mut *out, s).map_err(failed)?,
            },
        }
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, TimestampMicrosecondType};

    #[test]
    fn a_column_keeps_only_its_values_and_gets_its_nulls_when_encoded() {
        let mut s = Column::new(TypeClass::String, 1, 8);
        s.push(1, &Value::String("b".into())).unwrap();
        s.push_str(4, "dé").unwrap();
        s.push(5, &Value::Json("[1]".into())).unwrap();
        let mut n = Column::new(TypeClass::Number, 1, 0);
        n.push(0, &Value::Number(1.5)).unwrap();
        n.push(2, &Value::Number(-2.0)).unwrap();
        let mut t = Column::new(TypeClass::Timestamp, 1, 0);
        for row in 0..7 {
            t.push_time(row, row as i64 * 10).unwrap();
        }
        let mut b = Column::new(TypeClass::Boolean, 1, 0);
        b.push(6, &Value::Bool(false)).unwrap();
        // A value of the wrong class is refused, not written into the column.
        assert!(n.push(3, &Value::Bool(true)).is_err());
        assert_eq!((s.rows.len(), n.rows.len()), (3, 2));

        let s = s.into_array(7).unwrap();
        let s = s.as_string::<i32>();
        let got: Vec<Option<&str>> = s.iter().collect();
        assert_eq!(
            got,
            [None, Some("b"), None, None, Some("dé"), Some("[1]"), None]
        );
        let n = n.into_array(7).unwrap();
        let n = n.as_primitive::<Float64Type>();
        assert_eq!(
            n.iter().collect::<Vec<_>>(),
            [Some(1.5), None, Some(-2.0), None, None, None, None]
        );
        let t = t.into_array(7).unwrap();
        assert_eq!(t.null_count(), 0);
        assert_eq!(t.as_primitive::<TimestampMicrosecondType>().value(6), 60);
        let b = b.into_array(7).unwrap();
        assert_eq!(b.null_count(), 6);
        assert!(!b.as_boolean().value(6));
    }

    /// Ids, times and URLs are written without a dictionary, repeated values with one, and
    /// the file says so: the dictionary pages in the Parquet footer, read back.
    #[test]
    fn columns_of_unique_values_go_without_a_dictionary() {
        use crate::lake::file::OpenFile;
        use crate::lake::DataFormat;
        use crate::store::{LocalStore, ObjectStore};
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let rows = 3000;
        let mut cols = vec![
            Column::new(TypeClass::String, 1, 8), // ids
            Column::new(TypeClass::String, 1, 8), // 5 browsers
            Column::new(TypeClass::Number, 1, 0), // unique numbers
            Column::new(TypeClass::Number, 1, 0), // 3 prices
            Column::new(TypeClass::Timestamp, 1, 0),
            Column::new(TypeClass::String, 1, 8), // repeated, but too few values
            Column::new(TypeClass::String, 1, 8), // no value at all
        ];
        for r in 0..rows {
            cols[0].push_str(r, &format!("id-{r:08x}")).unwrap();
            cols[1]
                .push_str(r, ["a", "b", "c", "d", "e"][r % 5])
                .unwrap();
            cols[2].push(r, &Value::Number(r as f64 * 1.5)).unwrap();
            if r % 2 == 0 {
                cols[3].push(r, &Value::Number((r % 3) as f64)).unwrap();
            }
            cols[4]
                .push_time(r, 1_700_000_000_000_000 + r as i64)
                .unwrap();
            if r < 60 {
                cols[5].push_str(r, ["x", "y"][r % 2]).unwrap();
            }
        }
        let classes = [
            TypeClass::String,
            TypeClass::String,
            TypeClass::Number,
            TypeClass::Number,
            TypeClass::Timestamp,
            TypeClass::String,
            TypeClass::String,
        ];
        let schema = schema_of(&classes);
        let rows = Rows {
            schema: schema.clone(),
            rows,
            columns: cols.into_iter().map(Some).collect(),
        };
        let plain = rows.plain_columns();
        assert_eq!(plain, [0, 2, 4, 5, 6]);

        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut file = OpenFile::start(
            &store,
            "t/f.parquet".into(),
            DataFormat::Parquet,
            super::super::config::Compression::Snappy,
            schema,
            &plain,
        )
        .unwrap();
        file.write(rows, 0).unwrap();
        file.close().unwrap().upload.complete().unwrap();
        let copy = dir.path().join("copy.parquet");
        std::fs::write(&copy, store.get("t/f.parquet").unwrap()).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&copy).unwrap()).unwrap();
        let rg = reader.metadata().row_group(0);
        let dict: Vec<bool> = (0..7)
            .map(|i| rg.column(i).dictionary_page_offset().is_some())
            .collect();
        assert_eq!(dict, [false, true, false, true, false, false, false]);
        assert_eq!(rg.num_rows(), 3000);
    }

    /// `mp_properties`' text is what a JSON map of the same names and values writes
    /// (`serde_json`, in insertion order): escapes, numbers of every kind (not finite ones
    /// as `null`), booleans, nested text read as JSON and text that does not read as JSON.
    #[test]
    fn overflow_text_is_what_a_json_map_writes() {
        use sluice_engine::batch::{FragIndex, NameRef};
        let values = [
            Value::String("quote \"x\" back\\slash\nnew\u{1}\u{7f} é 😀".into()),
            Value::String(String::new().into()),
            Value::Number(0.0),
            Value::Number(-0.0),
            Value::Number(2.0),
            Value::Number(1.5e300),
            Value::Number(123_456_789_012_345_680_000.0),
            Value::Number(1e-7),
            Value::Number(-0.1),
            Value::Number(f64::NAN),
            Value::Number(f64::INFINITY),
            Value::Bool(true),
            Value::Bool(false),
            Value::Json(r#"{"k":[1,2.50,"\u00e9",1e5],"n":null}"#.into()),
            Value::Json("[]".into()),
            Value::Json("[1,".into()),
        ];
        let mut ev = Events::default();
        let mut ix = FragIndex::default();
        // Each event takes a few of the values, under names that need escapes too, and names
        // written from a fragment's copy (`Frag::literal_name`), of up to 24 bytes.
        for r in 0..values.len() {
            let props: Vec<_> = (0..4)
                .map(|k| {
                    let name = match k {
                        3 => format!("literal é {}", "x".repeat(r + 9)),
                        _ => format!("n\"{k}\\é{}", (r + k) % 5),
                    };
                    (
                        NameRef::intern(&name),
                        values[(r + 5 * k) % values.len()].clone(),
                    )
                })
                .collect();
            let pos = Position {
                partition: 0,
                offset: r as u64,
            };
            ev.push_event(&mut ix, NameRef::intern("E"), 0, pos, None, &props);
        }
        let mut copies = 0;
        for f in &mut ev.props {
            f.literal_name = sluice_engine::batch::LiteralName::new(f.name.raw().as_bytes());
            copies += f.literal_name.is_some() as usize;
        }
        assert!(copies > 0 && copies < ev.props.len(), "{copies}");
        let mut text = Vec::new();
        for r in 0..ev.len() {
            let e = ev.get(r);
            let mut map = serde_json::Map::new();
            for (_, name, v) in e.props() {
                let v = match v {
                    ValueRef::Bool(b) => serde_json::Value::Bool(b),
                    ValueRef::Num(n) => serde_json::Number::from_f64(n)
                        .map(serde_json::Value::Number)
                        .unwrap_or(serde_json::Value::Null),
                    ValueRef::Str(s) => serde_json::Value::String(s.to_string()),
                    ValueRef::Json(s) => serde_json::from_str(s)
                        .unwrap_or_else(|_| serde_json::Value::String(s.to_string())),
                };
                map.insert(name.raw().to_string(), v);
            }
            let want = serde_json::Value::Object(map).to_string();
            text.clear();
            overflow_object(&mut text, &ev, e.order()).unwrap();
            assert_eq!(std::str::from_utf8(&text).unwrap(), want, "event {r}");
        }
    }

    /// A batch split over two windows (two dates), with a property past the column limit:
    /// each window gets its events' values in its own rows, the system columns, and
    /// `mp_properties` as a JSON object of what overflowed, in the order it came.
    #[test]
    fn a_batch_split_over_windows_lands_each_value_in_its_own_row() {
        use sluice_engine::batch::{Events, FragColumn, FragIndex, NameRef, TableRef};
        use sluice_engine::component::ColumnDef;
        use std::sync::Arc;

        let col = |ordinal: u32, name: &str, class: TypeClass, source: Option<&str>| ColumnDef {
            ordinal,
            name: name.into(),
            class,
            source: source.map(String::from),
        };
        let def = TableDef {
            id: 7,
            name: "mp_master_event".into(),
            source_event: None,
            columns: vec![
                col(0, "mp_event_name", TypeClass::String, None),
                col(1, "time", TypeClass::Timestamp, None),
                col(2, "distinct_id", TypeClass::String, None),
                col(3, "a", TypeClass::Number, Some("a")),
                col(4, "s", TypeClass::String, Some("s")),
                col(5, "mp_properties", TypeClass::String, None),
            ],
        };
        let sys = SystemColumns::of(&def).unwrap();
        let n = NameRef::intern;
        let mut ev = Events::default();
        let mut ix = FragIndex::default();
        for r in 0..6u64 {
            let mut props = vec![(n("a"), Value::Number(r as f64))];
            if r % 2 == 1 {
                props.push((n("s"), Value::String(format!("s{r}").into())));
            }
            if r >= 4 {
                props.push((n("late"), Value::Json(format!("[{r}]").into())));
                props.push((n("later"), Value::Bool(true)));
            }
            let pos = Position {
                partition: 0,
                offset: r,
            };
            let d = (r != 2).then(|| format!("u{r}"));
            ev.push_event(&mut ix, n("E"), r as i64, pos, d.as_deref(), &props);
        }
        ev.tables.push(Arc::new(TableRef {
            id: 7,
            name: "mp_master_event".into(),
            cleaned_event_name: false,
        }));
        ev.table = vec![0; 6];
        ev.date = vec![10, 11, 10, 10, 11, 10];
        for f in &mut ev.props {
            let (ordinal, overflow) = match f.name.raw() {
                "a" => (3, false),
                "s" => (4, false),
                _ => (5, true),
            };
            f.columns = sluice_engine::batch::FragColumns::from_slice(&[FragColumn {
                table: 0,
                ordinal,
                overflow,
            }]);
        }
        // As the sink splits a batch: per date, its runs of events.
        let runs_of = |date: i32| -> Vec<(u32, u32)> {
            let mut runs: Vec<(u32, u32)> = Vec::new();
            for r in (0..6u32).filter(|&r| ev.date[r as usize] == date) {
                match runs.last_mut() {
                    Some(last) if last.1 == r => last.1 = r + 1,
                    _ => runs.push((r, r + 1)),
                }
            }
            runs
        };
        assert_eq!(runs_of(10), [(0, 1), (2, 4), (5, 6)]);
        let mut out = Vec::new();
        for date in [10, 11] {
            let runs = runs_of(date);
            let rows: usize = runs.iter().map(|&(a, b)| (b - a) as usize).sum();
            let mut w = Window::new(7, date);
            // A row held from an earlier batch: this batch's rows come after it.
            let mut first = Events::default();
            first.push_event(
                &mut FragIndex::default(),
                n("E"),
                99,
                Position {
                    partition: 0,
                    offset: 0,
                },
                None,
                &[],
            );
            first.tables = ev.tables.clone();
            first.table = vec![0];
            first.date = vec![date];
            w.append(&first, 0, Pick::All, &def, sys).unwrap();
            w.append(&ev, 0, Pick::Runs(&runs), &def, sys).unwrap();
            assert_eq!(w.rows, rows + 1);
            let batch = w.take_rows(&def).into_batch().unwrap();
            // The room it leaves for its next epoch: every column, each with room for its
            // values (at least the first room).
            let room = w.into_room().unwrap();
            assert_eq!(room.len(), def.columns.len());
            assert!(room
                .iter()
                .all(|&(n, b)| n >= FIRST_ROOM.0 && b >= FIRST_ROOM.1));
            // The same window in the next epoch starts with the room given, and holds the
            // same rows.
            let mut again = Window::with_room(7, date, vec![(1000, 8000); def.columns.len()]);
            again.append(&first, 0, Pick::All, &def, sys).unwrap();
            again.append(&ev, 0, Pick::Runs(&runs), &def, sys).unwrap();
            for c in again.columns.iter().flatten() {
                assert!(c.rows.capacity() >= 1000);
                if let Values::Str { bytes, ends } = &c.values {
                    assert!(bytes.capacity() >= 8000 && ends.capacity() >= 1000);
                }
            }
            assert_eq!(again.take_rows(&def).into_batch().unwrap(), batch);
            assert!(Window::new(7, date).into_room().is_none());
            out.push(batch);
        }
        let strs = |b: &RecordBatch, i: usize| -> Vec<Option<String>> {
            b.column(i)
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(String::from))
                .collect()
        };
        let nums = |b: &RecordBatch, i: usize| -> Vec<Option<f64>> {
            b.column(i).as_primitive::<Float64Type>().iter().collect()
        };
        let times = |b: &RecordBatch| -> Vec<i64> {
            b.column(1)
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .to_vec()
        };
        let s = |x: &str| Some(x.to_string());
        // Date 10: the held row, then events 0, 2, 3 and 5.
        assert_eq!(times(&out[0]), [99, 0, 2, 3, 5]);
        assert_eq!(
            nums(&out[0], 3),
            [None, Some(0.0), Some(2.0), Some(3.0), Some(5.0)]
        );
        assert_eq!(strs(&out[0], 4), [None, None, None, s("s3"), s("s5")]);
        assert_eq!(strs(&out[0], 2), [None, s("u0"), None, s("u3"), s("u5")]);
        assert_eq!(
            strs(&out[0], 5),
            [None, None, None, None, s(r#"{"late":[5],"later":true}"#)]
        );
        assert_eq!(strs(&out[0], 0), [s("E"), s("E"), s("E"), s("E"), s("E")]);
        // Date 11: the held row, then events 1 and 4.
        assert_eq!(times(&out[1]), [99, 1, 4]);
        assert_eq!(nums(&out[1], 3), [None, Some(1.0), Some(4.0)]);
        assert_eq!(strs(&out[1], 4), [None, s("s1"), None]);
        assert_eq!(
            strs(&out[1], 5),
            [None, None, s(r#"{"late":[4],"later":true}"#)]
        );
    }

    /// A schema of nullable columns `c0`, `c1`, ... of these classes.
    fn schema_of(classes: &[TypeClass]) -> SchemaRef {
        Arc::new(Schema::new(
            classes
                .iter()
                .enumerate()
                .map(|(i, &c)| Field::new(format!("c{i}"), arrow_type(c), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// Rows with sparse columns of every type (runs of values, values in the first and last
    /// rows, long and non-ASCII strings), columns without values, and a dense column.
    fn sparse_rows() -> Rows {
        let rows = 10_000;
        let classes = [
            TypeClass::String,
            TypeClass::Number,
            TypeClass::Boolean,
            TypeClass::Timestamp,
            TypeClass::String,
            TypeClass::Number,
            TypeClass::Boolean,
            TypeClass::Timestamp,
            TypeClass::String,
        ];
        let mut cols: Vec<Column> = classes.iter().map(|&c| Column::new(c, 1, 8)).collect();
        let long = "é".repeat(40) + "ü";
        for r in 0..rows {
            if r == 0 || r == rows - 1 || r % 997 == 0 || (5000..5003).contains(&r) {
                let s = match r % 3 {
                    0 => format!("{long}{r}"),
                    1 => format!("v{r}"),
                    _ => String::new(),
                };
                cols[0].push_str(r, &s).unwrap();
            }
            if r % 250 == 7 {
                let x = [0.0, -2.5, 1e300, -0.0][(r / 250) % 4];
                cols[1].push(r, &Value::Number(x)).unwrap();
                cols[2].push(r, &Value::Bool((r / 250) % 2 == 0)).unwrap();
                cols[3]
                    .push_time(r, 1_700_000_000_000_000 - r as i64)
                    .unwrap();
            }
            cols[8].push_str(r, ["a", "b", "c"][r % 3]).unwrap();
        }
        let schema = schema_of(&classes);
        let mut columns: Vec<Option<Column>> = cols.into_iter().map(Some).collect();
        for c in &mut columns[4..8] {
            *c = None;
        }
        Rows {
            schema,
            rows,
            columns,
        }
    }

    #[test]
    fn sparse_columns_read_back_as_written_with_statistics_and_page_index() {
        use crate::lake::config::Compression;
        use crate::lake::file::OpenFile;
        use crate::lake::DataFormat;
        use crate::store::{LocalStore, ObjectStore};
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        use parquet::file::metadata::PageIndexPolicy;
        use parquet::file::page_index::column_index::ColumnIndexMetaData;
        use parquet::file::statistics::Statistics;

        let probe = sparse_rows();
        let sparse: Vec<bool> = (0..9).map(|i| probe.is_sparse(i)).collect();
        assert_eq!(
            sparse,
            [true, true, true, true, true, true, true, true, false]
        );
        let expected = probe.into_batch().unwrap();

        for compression in [Compression::Snappy, Compression::Zstd, Compression::None] {
            let dir = tempfile::tempdir().unwrap();
            let store = LocalStore::open(dir.path()).unwrap();
            let rows = sparse_rows();
            let plain = rows.plain_columns();
            let mut file = OpenFile::start(
                &store,
                "t/f.parquet".into(),
                DataFormat::Parquet,
                compression,
                rows.schema.clone(),
                &plain,
            )
            .unwrap();
            // Two row groups: the second shows offsets are moved to where a chunk lands.
            file.write(rows, 0).unwrap();
            file.write(sparse_rows(), 0).unwrap();
            file.close().unwrap().upload.complete().unwrap();
            let bytes = bytes::Bytes::from(store.get("t/f.parquet").unwrap());

            let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
                bytes.clone(),
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required),
            )
            .unwrap();
            let meta = reader.metadata().clone();
            let offsets = meta
                .offset_index()
                .expect("every chunk has an offset index");
            assert_eq!(offsets.len(), 2);
            assert!(offsets.iter().all(|rg| rg.len() == 9));
            let batches: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
            let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
            assert_eq!(all.num_rows(), 20_000);
            for half in [all.slice(0, 10_000), all.slice(10_000, 10_000)] {
                for i in 0..9 {
                    assert_eq!(
                        half.column(i).as_ref(),
                        expected.column(i).as_ref(),
                        "column {i} with {compression:?}"
                    );
                }
            }

            let rg = meta.row_group(1);
            let Some(Statistics::ByteArray(s)) = rg.column(0).statistics() else {
                panic!("string statistics")
            };
            let values = expected.column(0).as_string::<i32>();
            assert_eq!(
                s.null_count_opt(),
                Some(10_000 - values.len() as u64 + values.null_count() as u64)
            );
            let min = values.iter().flatten().min().unwrap();
            let max = values.iter().flatten().max().unwrap();
            assert_eq!(s.min_opt().unwrap().data(), min.as_bytes());
            let written_max = s.max_opt().unwrap().data();
            assert!(written_max.len() <= 64 && written_max > max.as_bytes());
            assert!(!s.max_is_exact());
            let Some(Statistics::Double(d)) = rg.column(1).statistics() else {
                panic!("number statistics")
            };
            assert_eq!((d.min_opt(), d.max_opt()), (Some(&-2.5), Some(&1e300)));
            let Some(Statistics::Boolean(b)) = rg.column(2).statistics() else {
                panic!("boolean statistics")
            };
            assert_eq!((b.min_opt(), b.max_opt()), (Some(&false), Some(&true)));
            let Some(Statistics::Int64(t)) = rg.column(3).statistics() else {
                panic!("time statistics")
            };
            assert_eq!(t.max_opt(), Some(&(1_700_000_000_000_000 - 7)));
            for i in 4..8 {
                let s = rg.column(i).statistics().unwrap();
                assert_eq!(s.null_count_opt(), Some(10_000), "column {i}");
                assert!(s.min_bytes_opt().is_none(), "column {i}");
            }
            // The column index: a null page for the empty columns, the chunk's bounds for
            // the others (and parquet's own for the dense one).
            let index = &meta.column_index().expect("a column index")[1];
            for (i, c) in index.iter().enumerate() {
                assert!(
                    !matches!(c, ColumnIndexMetaData::NONE),
                    "column {i} has a column index"
                );
                assert_eq!(c.is_null_page(0), (4..8).contains(&i), "column {i}");
            }
        }
    }
}
