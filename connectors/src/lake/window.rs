//! One (table, `mp_date`) window: rows buffered column by column in Arrow builders, then
//! encoded to a Parquet file. Null padding is lazy: a column catches up only when it gets a
//! value, so an event costs its filled properties, not the table's width.

use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, BooleanBuilder, Float64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use sluice_engine::batch::{Event, Position, Value};
use sluice_engine::component::TableDef;
use sluice_engine::{EngineError, Result, TypeClass};

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

enum Builder {
    Str(StringBuilder),
    Num(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
}

/// Rows a column's buffers hold before they first grow.
const FIRST_ROWS: usize = 16;

struct Column {
    b: Builder,
    len: usize,
}

impl Column {
    /// A column for `rows` rows before its buffers grow.
    fn new(class: TypeClass, rows: usize) -> Self {
        // Small first: a sink may hold thousands of (table, day) windows, most of them with
        // few rows, and Arrow's default (1,024 rows) would cost some 8 KiB per column each.
        // Buffers double as they fill.
        let b = match class {
            // Every row takes a slot (nulls too, padded at the end), so slots are sized for
            // all rows; string bytes grow with the values, as sparse columns have few.
            TypeClass::String => Builder::Str(StringBuilder::with_capacity(rows, 512)),
            TypeClass::Number => Builder::Num(Float64Builder::with_capacity(rows)),
            TypeClass::Boolean => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            TypeClass::Timestamp => {
                Builder::Time(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
        };
        Column { b, len: 0 }
    }

    fn pad(&mut self, row: usize) {
        let n = row - self.len;
        if n > 0 {
            match &mut self.b {
                Builder::Str(b) => b.append_nulls(n),
                Builder::Num(b) => b.append_nulls(n),
                Builder::Bool(b) => b.append_nulls(n),
                Builder::Time(b) => b.append_nulls(n),
            }
            self.len = row;
        }
    }

    fn push_str(&mut self, row: usize, s: &str) -> Result<()> {
        self.pad(row);
        match &mut self.b {
            Builder::Str(b) => b.append_value(s),
            _ => {
                return Err(EngineError::Internal(
                    "a string for a non-string column".into(),
                ))
            }
        }
        self.len += 1;
        Ok(())
    }

    fn push(&mut self, row: usize, v: &Value) -> Result<usize> {
        self.pad(row);
        let size = match (&mut self.b, v) {
            (Builder::Str(b), Value::String(s) | Value::Json(s)) => {
                b.append_value(s);
                s.len() + 4
            }
            (Builder::Num(b), Value::Number(n)) => {
                b.append_value(*n);
                8
            }
            (Builder::Bool(b), Value::Bool(x)) => {
                b.append_value(*x);
                1
            }
            _ => {
                return Err(EngineError::Internal(format!(
                    "value {v:?} does not fit its column's type"
                )))
            }
        };
        self.len += 1;
        Ok(size)
    }

    fn push_time(&mut self, row: usize, us: i64) -> Result<()> {
        self.pad(row);
        match &mut self.b {
            Builder::Time(b) => b.append_value(us),
            _ => {
                return Err(EngineError::Internal(
                    "time column is not a timestamp".into(),
                ))
            }
        }
        self.len += 1;
        Ok(())
    }

    fn finish(&mut self, rows: usize) -> ArrayRef {
        self.pad(rows);
        match &mut self.b {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Num(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
        }
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
    /// Rows a new column is sized for: after a row group, as many as it had.
    first_rows: usize,
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
            first_rows: FIRST_ROWS,
        }
    }

    fn col(&mut self, ordinal: usize, def: &TableDef) -> Result<&mut Column> {
        if self.columns.len() <= ordinal {
            self.columns.resize_with(ordinal + 1, || None);
        }
        let class = def.columns.get(ordinal).map(|c| c.class).ok_or_else(|| {
            EngineError::Internal(format!("column {ordinal} unknown in {}", def.name))
        })?;
        let rows = self.first_rows;
        Ok(self.columns[ordinal].get_or_insert_with(|| Column::new(class, rows)))
    }

    /// Appends one event; `def` must know every column the event uses.
    pub fn push(&mut self, e: &Event, def: &TableDef, sys: SystemColumns) -> Result<()> {
        let row = self.rows;
        if self.first.is_none() {
            self.first = Some(e.pos);
        }
        let mut bytes = 16;
        if let Some(i) = sys.event_name {
            let cleaned = e.table.as_ref().is_some_and(|t| t.cleaned_event_name);
            let name = match (cleaned, e.name.clean()) {
                (true, Some(c)) => c,
                _ => e.name.raw(),
            };
            self.col(i, def)?.push_str(row, name)?;
            bytes += name.len();
        }
        self.col(sys.time, def)?.push_time(row, e.time_us)?;
        if let Some(d) = &e.distinct_id {
            self.col(sys.distinct_id, def)?.push_str(row, d)?;
            bytes += d.len();
        }
        let mut overflow: Option<(usize, serde_json::Map<String, serde_json::Value>)> = None;
        for p in &e.props {
            if p.column == sluice_engine::batch::NO_COLUMN {
                continue;
            }
            if p.overflow {
                let (_, map) =
                    overflow.get_or_insert_with(|| (p.column as usize, Default::default()));
                map.insert(p.name.raw().to_string(), to_json(&p.value));
                continue;
            }
            bytes += self.col(p.column as usize, def)?.push(row, &p.value)?;
        }
        if let Some((ordinal, map)) = overflow {
            let text = serde_json::Value::Object(map).to_string();
            bytes += text.len();
            self.col(ordinal, def)?.push_str(row, &text)?;
        }
        self.rows += 1;
        self.bytes += bytes;
        Ok(())
    }

    /// Whether rows held need a new file: the open one's schema lacks columns of a table now
    /// `width` wide (a file's schema is fixed).
    pub fn outgrew_file(&self, width: usize) -> bool {
        self.rows > 0 && self.file.as_ref().is_some_and(|f| f.columns < width)
    }

    /// The rows held as a record batch with `def`'s columns; empties the window's rows.
    pub fn take_batch(&mut self, def: &TableDef) -> Result<RecordBatch> {
        let schema = arrow_schema(def);
        let rows = self.rows;
        let mut arrays = Vec::with_capacity(def.columns.len());
        for (i, field) in schema.fields().iter().enumerate() {
            let col = self.columns.get_mut(i).and_then(|c| c.as_mut());
            arrays.push(match col {
                Some(c) => c.finish(rows),
                None => new_null_array(field.data_type(), rows),
            });
        }
        let batch = RecordBatch::try_new(schema, arrays)
            .map_err(|e| EngineError::Internal(format!("building a record batch: {e}")))?;
        self.columns.clear();
        // The next row group is likely as big: its buffers start at that size rather than
        // doubling their way up to it.
        self.first_rows = rows.clamp(FIRST_ROWS, 1 << 20);
        self.rows = 0;
        self.bytes = 0;
        self.first = None;
        Ok(batch)
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => serde_json::Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Json(s) => {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.clone()))
        }
    }
}
