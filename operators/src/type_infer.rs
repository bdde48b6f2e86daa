//! `type-infer`: gives every (table, property, type class) its column, once, durably
//! (SPEC §4, §6, §12 D6, D7, D14).
//!
//! Resolution runs in input order on one thread (the first committed type owns the base name),
//! and costs the registry only the first time a (table, name, class) is seen: afterwards a
//! cache by name number answers. A batch's new columns are registered together, in order of
//! first arrival, in one registry call per table (one transaction in a durable catalog).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::{Batch, Events, FragColumn, FragColumns, NameRef, TableRef, TypeClass};
use sluice_engine::component::{ColumnAssignment, ColumnRequest, Operator, SchemaRegistry};
use sluice_engine::registry::{BuildContext, Capability, Component, Issue};
use sluice_engine::{EngineError, Result};

use crate::naming::{conflict_candidate, first_free};

/// The single table of monoschema mode.
pub const MASTER_TABLE: &str = "mp_master_event";
/// Names taken in every table before any property (§12 D7) besides the system columns.
pub const RESERVED_COLUMNS: &[&str] = &[
    "time",
    "distinct_id",
    "mp_date",
    "mp_properties",
    "mp_event_name",
];

/// One table for all events, or one per event name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMode {
    /// Every event goes to `mp_master_event`, with an `mp_event_name` column.
    #[default]
    Monoschema,
    /// One table per cleaned event name.
    Multischema,
}

/// Assigns each event its table and each property its column, creating columns in the
/// dataset's catalog before any file uses them. A property that arrives with a second type gets
/// a `<name>_<type>` column; past `max_columns` new properties go into `mp_properties`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeInferConfig {
    /// `monoschema` (default) or `multischema`.
    #[serde(default)]
    pub schema: SchemaMode,
    /// Column limit per table (SPEC §4.5).
    #[serde(default = "default_max_columns")]
    pub max_columns: u32,
    /// What `mp_event_name` holds: the `original` event name (default, SPEC §12 D1) or the
    /// `cleaned` one.
    #[serde(default)]
    pub event_name: EventNameValue,
}

/// The value of `mp_event_name`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventNameValue {
    #[default]
    Original,
    Cleaned,
}

fn default_max_columns() -> u32 {
    9500
}

impl Component for TypeInferConfig {
    fn validate(&self) -> Vec<Issue> {
        if self.max_columns < 4 {
            return vec![Issue::at(
                "max_columns",
                format!(
                    "max_columns {} leaves no room for properties",
                    self.max_columns
                ),
                "use the default, 9500, or at least 4 (3 system columns and one property)",
            )];
        }
        vec![]
    }
    fn requires(&self) -> &'static [Capability] {
        &[Capability::CleanNames]
    }
    fn provides(&self) -> &'static [Capability] {
        &[Capability::Columns]
    }
    fn needs_schema_registry(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        match self.schema {
            SchemaMode::Monoschema => "monoschema: mp_master_event".into(),
            SchemaMode::Multischema => "multischema: one table per event".into(),
        }
    }
    fn build_operator(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        let registry = cx.schema_registry.clone().ok_or_else(|| {
            EngineError::config(
                format!("`{}` has no schema registry", cx.name),
                "feed it into a lake sink",
            )
        })?;
        let mut t = TypeInfer::new(registry, self.schema, self.max_columns);
        t.cleaned_event_name = self.event_name == EventNameValue::Cleaned;
        Ok(Box::new(t))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// (table id, name number, class).
type ColumnKey = (i64, usize, TypeClass);
/// Hashing here is on the hot path (once per property): a fast non-cryptographic hasher.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A [`Columns`] slot no column is known for.
const UNKNOWN: u32 = u32::MAX;
/// Marks a [`Columns`] ordinal whose values go into `mp_properties`.
const OVERFLOW: u32 = 1 << 31;

/// A name's columns in the table it was last asked for (a number of [`TypeInfer::slots`]):
/// one per class a property can have (string, number, boolean), as an ordinal with
/// [`OVERFLOW`], or [`UNKNOWN`]. Kept by name number ([`NameRef::id`]), 16 bytes a name: with
/// 64,000 rare names the hash map's control bytes and 32-byte entries took two cache misses a
/// property, and most of type-infer's time.
#[derive(Clone, Copy)]
struct Columns {
    table: u32,
    ordinals: [u32; 3],
}

impl Columns {
    const NONE: Columns = Columns {
        table: UNKNOWN,
        ordinals: [UNKNOWN; 3],
    };
}

/// The place of a property's class in [`Columns::ordinals`] (`time` has no place: its column
/// is found in the map).
fn class_slot(class: TypeClass) -> Option<usize> {
    match class {
        TypeClass::String => Some(0),
        TypeClass::Number => Some(1),
        TypeClass::Boolean => Some(2),
        TypeClass::Timestamp => None,
    }
}

pub struct TypeInfer {
    registry: Arc<dyn SchemaRegistry>,
    mode: SchemaMode,
    max_columns: u32,
    master: Option<Arc<TableRef>>,
    /// By event-name number ([`NameRef::id`]).
    tables: Map<usize, Arc<TableRef>>,
    columns: Map<ColumnKey, (u32, bool)>,
    /// In front of `columns`: by name number, its columns in the table it was last met in.
    by_name: Vec<Columns>,
    /// Table ids, numbered for [`Columns::table`].
    slots: Map<i64, u32>,
    cleaned_event_name: bool,
}

impl TypeInfer {
    pub fn new(registry: Arc<dyn SchemaRegistry>, mode: SchemaMode, max_columns: u32) -> Self {
        TypeInfer {
            registry,
            mode,
            max_columns,
            master: None,
            tables: Map::default(),
            columns: Map::default(),
            by_name: Vec::new(),
            slots: Map::default(),
            cleaned_event_name: false,
        }
    }

    fn table_for(&mut self, name: &NameRef) -> Result<Arc<TableRef>> {
        match self.mode {
            SchemaMode::Monoschema => {
                if let Some(t) = &self.master {
                    return Ok(t.clone());
                }
                let def = self.registry.table(
                    None,
                    Some(MASTER_TABLE),
                    &[
                        ("mp_event_name", TypeClass::String),
                        ("time", TypeClass::Timestamp),
                        ("distinct_id", TypeClass::String),
                    ],
                    &|_| MASTER_TABLE.to_string(),
                )?;
                let t = Arc::new(TableRef {
                    id: def.id,
                    name: def.name,
                    cleaned_event_name: self.cleaned_event_name,
                });
                self.master = Some(t.clone());
                Ok(t)
            }
            SchemaMode::Multischema => {
                let id = name.id();
                if let Some(t) = self.tables.get(&id) {
                    return Ok(t.clone());
                }
                let clean = name
                    .clean()
                    .ok_or_else(|| EngineError::Internal("type-infer before clean-name".into()))?;
                let def = self.registry.table(
                    Some(name.raw()),
                    None,
                    &[
                        ("time", TypeClass::Timestamp),
                        ("distinct_id", TypeClass::String),
                    ],
                    &|taken| first_free(clean, taken),
                )?;
                let t = Arc::new(TableRef {
                    id: def.id,
                    name: def.name,
                    cleaned_event_name: self.cleaned_event_name,
                });
                self.tables.insert(id, t.clone());
                Ok(t)
            }
        }
    }

    /// The number of table `table` in [`Columns::table`].
    fn slot(&mut self, table: i64) -> u32 {
        let next = self.slots.len() as u32;
        *self.slots.entry(table).or_insert(next)
    }

    /// What [`TypeInfer::by_name`] holds for `name`.
    fn known(&self, name: NameRef) -> Columns {
        self.by_name
            .get(name.id())
            .copied()
            .unwrap_or(Columns::NONE)
    }

    /// The column of (`table`, `name`, `class`) when a cache knows it; `slot` is the table's
    /// [`TypeInfer::slot`], `known` what [`TypeInfer::known`] held for `name` (read ahead).
    fn cached_column(
        &mut self,
        table: i64,
        slot: u32,
        name: &NameRef,
        class: TypeClass,
        known: Columns,
    ) -> Option<(u32, bool)> {
        let place = class_slot(class);
        if let Some(c) = place {
            if known.table == slot && known.ordinals[c] != UNKNOWN {
                let o = known.ordinals[c];
                return Some((o & !OVERFLOW, o & OVERFLOW != 0));
            }
        }
        // One name number per raw name in the process ([`NameRef::intern`]): the map by number
        // is the whole record.
        let v = *self.columns.get(&(table, name.id(), class))?;
        // An ordinal that does not fit beside the mark is only in the map.
        if let Some(c) = place.filter(|_| v.0 < OVERFLOW) {
            let i = name.id();
            if i >= self.by_name.len() {
                self.by_name.resize(i + 1, Columns::NONE);
            }
            let k = &mut self.by_name[i];
            if k.table != slot {
                *k = Columns {
                    table: slot,
                    ..Columns::NONE
                };
            }
            k.ordinals[c] = if v.1 { v.0 | OVERFLOW } else { v.0 };
        }
        Some(v)
    }

    /// Asks the registry for `missing` (table, name, class), in order of first arrival, one
    /// call (one transaction) per table; caches the answers.
    fn register(&mut self, mut missing: Vec<(i64, NameRef, TypeClass)>) -> Result<()> {
        // By table; a stable sort keeps the order of arrival within each.
        missing.sort_by_key(|&(t, _, _)| t);
        for same_table in missing.chunk_by(|a, b| a.0 == b.0) {
            let table = same_table[0].0;
            let wanted = same_table
                .iter()
                .map(|(_, name, class)| {
                    let clean = name.clean().ok_or_else(|| {
                        EngineError::Internal("type-infer before clean-name".into())
                    })?;
                    Ok((name, clean, *class))
                })
                .collect::<Result<Vec<_>>>()?;
            let proposers: Vec<_> = wanted
                .iter()
                .map(|&(_, clean, class)| {
                    move |first: Option<&str>, taken: &dyn Fn(&str) -> bool| {
                        let base = match first {
                            Some(f) => conflict_candidate(f, class),
                            None => clean.to_string(),
                        };
                        first_free(&base, &|n| taken(n) || RESERVED_COLUMNS.contains(&n))
                    }
                })
                .collect();
            let requests: Vec<ColumnRequest<'_>> = wanted
                .iter()
                .zip(&proposers)
                .map(|(&(name, _, class), propose)| ColumnRequest {
                    raw: name.raw(),
                    class,
                    propose,
                })
                .collect();
            let got = self.registry.columns(table, &requests, self.max_columns)?;
            if got.len() != wanted.len() {
                return Err(EngineError::Internal(format!(
                    "the registry answered {} columns for {} asked",
                    got.len(),
                    wanted.len()
                )));
            }
            for ((name, _, class), a) in wanted.iter().zip(got) {
                let v = match a {
                    ColumnAssignment::Column(c) => (c.ordinal, false),
                    ColumnAssignment::Overflow(c) => (c.ordinal, true),
                };
                self.columns.insert((table, name.id(), *class), v);
            }
        }
        Ok(())
    }
}

impl TypeInfer {
    /// Gives each event its table (`Events::table`, `Events::tables`).
    fn assign_tables(&mut self, ev: &mut Events) -> Result<()> {
        ev.tables.clear();
        ev.table.clear();
        if ev.is_empty() {
            return Ok(());
        }
        if self.mode == SchemaMode::Monoschema {
            let t = self.table_for(&ev.name[0])?;
            ev.tables.push(t);
            ev.table.resize(ev.len(), 0);
            return Ok(());
        }
        // By event name: the batch's tables, each once, in order of first arrival.
        let mut index: Map<usize, u32> = Map::default();
        let mut last: Option<(NameRef, u32)> = None;
        ev.table.reserve(ev.len());
        for r in 0..ev.len() {
            let name = ev.name[r];
            let t = match last {
                Some((n, t)) if n == name => t,
                _ => {
                    let t = match index.get(&name.id()) {
                        Some(&t) => t,
                        None => {
                            let table = self.table_for(&name)?;
                            let t = match ev.tables.iter().position(|x| Arc::ptr_eq(x, &table)) {
                                Some(t) => t as u32,
                                None => {
                                    ev.tables.push(table);
                                    (ev.tables.len() - 1) as u32
                                }
                            };
                            index.insert(name.id(), t);
                            t
                        }
                    };
                    last = Some((name, t));
                    t
                }
            };
            ev.table.push(t);
        }
        Ok(())
    }
}

impl Operator for TypeInfer {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        let ev = &mut batch.events;
        self.assign_tables(ev)?;
        // Per fragment (a name and class), its column in each table its events go to: a
        // lookup per fragment and table, not per value. The batch's new columns are gathered
        // with where they first arrived (event, then place among its properties) and
        // registered together, in that order.
        let mut missing: Vec<(u32, usize, u32, u32)> = Vec::new();
        let single = ev.tables.len() == 1;
        let slots: Vec<u32> = ev.tables.iter().map(|t| self.slot(t.id)).collect();
        // What the cache holds for each fragment's name, read in a loop of its own: with many
        // rare names both reads (the name's number, then its entry) miss the cache, and this
        // loop keeps many of them in flight at once, where the one below (long, with calls and
        // branches) waited for each in turn.
        let known: Vec<Columns> = ev.props.iter().map(|f| self.known(f.name)).collect();
        let mut seen_tables: Vec<(u32, u32)> = Vec::new();
        for (fi, &cached) in known.iter().enumerate() {
            let f = &ev.props[fi];
            if f.is_empty() {
                continue;
            }
            seen_tables.clear();
            if single {
                seen_tables.push((0, f.rows[0]));
            } else {
                for &row in &f.rows {
                    let t = ev.table[row as usize];
                    if !seen_tables.iter().any(|&(x, _)| x == t) {
                        seen_tables.push((t, row));
                    }
                }
            }
            let (name, class) = (f.name, f.class());
            let mut columns = FragColumns::with_capacity(seen_tables.len());
            for &(t, first_row) in &seen_tables {
                let table = ev.tables[t as usize].id;
                match self.cached_column(table, slots[t as usize], &name, class, cached) {
                    Some((ordinal, overflow)) => columns.push(FragColumn {
                        table: t,
                        ordinal,
                        overflow,
                    }),
                    None => {
                        let slot = ev
                            .get(first_row as usize)
                            .props()
                            .position(|(g, _, _)| g as usize == fi)
                            .unwrap_or(0);
                        missing.push((first_row, slot, t, fi as u32));
                    }
                }
            }
            ev.props[fi].columns = columns;
        }
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        let keys: Vec<(i64, NameRef, TypeClass)> = missing
            .iter()
            .map(|&(_, _, t, fi)| {
                let f = &ev.props[fi as usize];
                (ev.tables[t as usize].id, f.name, f.class())
            })
            .collect();
        self.register(keys)?;
        for &(_, _, t, fi) in &missing {
            let f = &ev.props[fi as usize];
            let (name, class) = (f.name, f.class());
            let table = ev.tables[t as usize].id;
            let (ordinal, overflow) = self
                .cached_column(table, slots[t as usize], &name, class, Columns::NONE)
                .ok_or_else(|| {
                    EngineError::Internal(format!("no column registered for {}", name.raw()))
                })?;
            ev.props[fi as usize].columns.push(FragColumn {
                table: t,
                ordinal,
                overflow,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean_name::CleanName;
    use crate::decode::MixpanelDecoder;
    use crate::memory_registry::MemoryRegistry;
    use sluice_engine::batch::RawLines;
    use sluice_engine::component::TableDef;

    /// Runs lines through decode, clean-name and type-infer; returns the registry's tables and
    /// the batch.
    fn run(mode: SchemaMode, max_columns: u32, lines: &[&str]) -> (Vec<TableDef>, Batch) {
        let reg = Arc::new(MemoryRegistry::new());
        let mut ti = TypeInfer::new(reg.clone(), mode, max_columns);
        let b = through(&mut MixpanelDecoder::default(), &mut ti, lines);
        (reg.tables(), b)
    }

    /// One batch of `lines` through `dec`, clean-name and `ti`.
    fn through<S: AsRef<str>>(dec: &mut MixpanelDecoder, ti: &mut TypeInfer, lines: &[S]) -> Batch {
        let mut b = Batch {
            raw: RawLines::from_lines(lines),
            ..Default::default()
        };
        dec.process(&mut b).unwrap();
        CleanName.process(&mut b).unwrap();
        ti.process(&mut b).unwrap();
        b
    }

    fn columns(t: &TableDef) -> Vec<(String, Option<String>, TypeClass)> {
        t.columns
            .iter()
            .map(|c| (c.name.clone(), c.source.clone(), c.class))
            .collect()
    }

    fn names(t: &TableDef) -> Vec<&str> {
        t.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The columns (ordinal, overflow) of event `row`'s properties, in the order they came.
    fn columns_of(b: &Batch, row: usize) -> Vec<(u32, bool)> {
        let t = b.events.table[row];
        b.events
            .get(row)
            .props()
            .map(|(f, _, _)| {
                let c = b.events.props[f as usize]
                    .column_in(t)
                    .expect("every property has a column");
                (c.ordinal, c.overflow)
            })
            .collect()
    }

    /// Events one batch at a time (so that later ones meet known columns), with properties in
    /// orders that follow the remembered one, break it, skip some, repeat an event kind and
    /// change a type: every property gets the column the registry holds for its raw name and
    /// class, in both schema modes.
    #[test]
    fn known_columns_are_found_whatever_order_properties_come_in() {
        let lines = [
            r#"{"event":"A","properties":{"time":1,"a":1,"b":"x","c":true}}"#,
            r#"{"event":"A","properties":{"time":1,"a":2,"b":"y","c":false}}"#,
            r#"{"event":"A","properties":{"time":1,"c":true,"a":3,"b":"z"}}"#,
            r#"{"event":"B","properties":{"time":1,"b":"q","d":1}}"#,
            r#"{"event":"A","properties":{"time":1,"a":4,"c":true}}"#,
            r#"{"event":"A","properties":{"time":1,"a":"four","b":5,"c":true}}"#,
            r#"{"event":"B","properties":{"time":1,"d":2,"b":"r","a":null}}"#,
            r#"{"event":"A","properties":{"time":1,"a":6,"b":"s","c":true}}"#,
            r#"{"event":"A","properties":{"time":1,"b":"t","a":"seven","c":false}}"#,
        ];
        for mode in [SchemaMode::Monoschema, SchemaMode::Multischema] {
            let reg = Arc::new(MemoryRegistry::new());
            let mut ti = TypeInfer::new(reg.clone(), mode, 100);
            let mut dec = MixpanelDecoder::default();
            let mut checked = 0;
            for line in lines.iter().cycle().take(lines.len() * 3) {
                let b = through(&mut dec, &mut ti, &[line]);
                let tables = reg.tables();
                for e in b.events.iter() {
                    let table = e.table().unwrap();
                    let def = tables.iter().find(|t| t.id == table.id).unwrap();
                    let cols = columns_of(&b, e.row());
                    for ((_, name, value), (ordinal, _)) in e.props().zip(cols) {
                        let c = &def.columns[ordinal as usize];
                        assert_eq!(
                            (c.source.as_deref(), c.class),
                            (Some(name.raw()), value.class()),
                            "{mode:?}: {line}"
                        );
                        checked += 1;
                    }
                }
            }
            assert_eq!(checked, 3 * 24, "{mode:?}");
        }
    }

    fn ev(props: &str) -> String {
        format!(r#"{{"event":"E","properties":{{"time":1700000000{props}}}}}"#)
    }

    #[test]
    fn collisions_are_numbered_in_order_of_first_arrival() {
        // SPEC §3.4 #29: XY, then Xy, then xY.
        let (t, _) = run(
            SchemaMode::Monoschema,
            9500,
            &[&ev(r#","XY":1"#), &ev(r#","Xy":1"#), &ev(r#","xY":1"#)],
        );
        assert_eq!(
            names(&t[0]),
            ["mp_event_name", "time", "distinct_id", "xy", "xy_1", "xy_2"]
        );
    }

    #[test]
    fn a_type_change_gets_a_suffixed_column_and_the_base_stays_null() {
        // §3.4 #30, §4.3, §12 D6: number first, then string; arrays and objects are strings.
        let (t, b) = run(
            SchemaMode::Monoschema,
            9500,
            &[
                &ev(r#","x":1"#),
                &ev(r#","x":"a""#),
                &ev(r#","x":true"#),
                &ev(r#","x":[1]"#),
                &ev(r#","x":1.5"#),
            ],
        );
        assert_eq!(
            columns(&t[0])[3..],
            [
                ("x".into(), Some("x".into()), TypeClass::Number),
                ("x_string".into(), Some("x".into()), TypeClass::String),
                ("x_boolean".into(), Some("x".into()), TypeClass::Boolean),
            ]
        );
        let cols: Vec<u32> = (0..5).map(|r| columns_of(&b, r)[0].0).collect();
        assert_eq!(cols, [3, 4, 5, 4, 3]);
    }

    #[test]
    fn null_never_creates_or_conflicts_with_a_column() {
        // §4.1, §12 D6.
        let (t, b) = run(
            SchemaMode::Monoschema,
            9500,
            &[&ev(r#","n":null"#), &ev(r#","n":"v""#), &ev(r#","n":null"#)],
        );
        assert_eq!(names(&t[0])[3..], ["n"]);
        // A null is no value: the event has no property to give a column.
        assert_eq!(b.events.get(0).props().count(), 0);
        assert_eq!(columns_of(&b, 1), [(3, false)]);
    }

    #[test]
    fn system_names_are_taken_from_the_start() {
        // §3.2, §12 D7: a user property `Time` becomes `time_1`; mp_date and mp_properties are taken.
        let (t, _) = run(
            SchemaMode::Monoschema,
            9500,
            &[&ev(
                r#","Time":1,"DISTINCT_ID":"d","mp_date":"x","MP_Properties":"y","mp_event_name":"z""#,
            )],
        );
        assert_eq!(
            names(&t[0])[3..],
            [
                "time_1",
                "distinct_id_1",
                "mp_date_1",
                "mp_properties_1",
                "mp_event_name_1"
            ]
        );
    }

    #[test]
    fn first_free_name_never_shadows_a_literal_suffix() {
        // §12 D7: `xy_1` arrived first, so the collision of `XY` with `xy` takes `xy_2`.
        let (t, _) = run(
            SchemaMode::Monoschema,
            9500,
            &[&ev(r#","xy_1":1,"xy":1,"XY":1"#)],
        );
        assert_eq!(names(&t[0])[3..], ["xy_1", "xy", "xy_2"]);
    }

    #[test]
    fn long_names_are_cut_and_collisions_still_fit() {
        // §3.4 #31 and D7: base shortened so base_n fits 128.
        let a = "a".repeat(150);
        let b = format!("{}B", "a".repeat(149));
        let (t, _) = run(
            SchemaMode::Monoschema,
            9500,
            &[&ev(&format!(r#","{a}":1,"{b}":1"#))],
        );
        let n = names(&t[0]);
        assert_eq!(n[3], "a".repeat(128));
        assert_eq!(n[4], format!("{}_1", "a".repeat(126)));
        assert!(n.iter().all(|c| c.len() <= 128));
    }

    #[test]
    fn conflict_columns_of_long_names_fit_too() {
        let a = "q".repeat(128);
        let (t, _) = run(
            SchemaMode::Monoschema,
            9500,
            &[&ev(&format!(r#","{a}":1"#)), &ev(&format!(r#","{a}":"s""#))],
        );
        let n = names(&t[0]);
        assert_eq!(n[4].len(), 128);
        assert!(n[4].starts_with("qqq"));
        assert_ne!(n[4], n[3]);
    }

    /// The cache by name number holds one table's columns per name: a name met in turn in two
    /// tables (one where it has a column, one where it overflows), as two classes, one batch
    /// and several at a time, always gets the column (or `mp_properties`) its table holds.
    #[test]
    fn a_name_in_turn_in_two_tables_gets_each_tables_column() {
        // Table A's limit (2 system columns + 2 properties) is taken by `x` and `y` first;
        // in B, `z` comes before them and `y` overflows.
        let lines = [
            r#"{"event":"A","properties":{"time":1,"x":1,"y":"s"}}"#,
            r#"{"event":"B","properties":{"time":1,"z":1,"x":2}}"#,
            r#"{"event":"B","properties":{"time":1,"y":"t","x":3}}"#,
            r#"{"event":"A","properties":{"time":1,"y":"u","z":4,"x":true}}"#,
            r#"{"event":"B","properties":{"time":1,"x":5,"y":6}}"#,
        ];
        let reg = Arc::new(MemoryRegistry::new());
        let mut ti = TypeInfer::new(reg.clone(), SchemaMode::Multischema, 4);
        let mut dec = MixpanelDecoder::default();
        let (mut own, mut overflowed) = (0, 0);
        for size in [1, 2, 5, 1, 3] {
            for chunk in lines.chunks(size) {
                let b = through(&mut dec, &mut ti, chunk);
                let tables = reg.tables();
                for e in b.events.iter() {
                    let def = tables
                        .iter()
                        .find(|t| t.id == e.table().unwrap().id)
                        .unwrap();
                    for ((_, name, value), got) in e.props().zip(columns_of(&b, e.row())) {
                        let column = def.columns.iter().position(|c| {
                            c.source.as_deref() == Some(name.raw()) && c.class == value.class()
                        });
                        let want = match column {
                            Some(i) => (i as u32, false),
                            None => {
                                let p = def.columns.iter().position(|c| c.name == "mp_properties");
                                (p.expect("an overflow column") as u32, true)
                            }
                        };
                        assert_eq!(got, want, "{} in {}", name.raw(), def.name);
                        if want.1 {
                            overflowed += 1;
                        } else {
                            own += 1;
                        }
                    }
                }
            }
        }
        // Every value was checked, some of each kind.
        assert_eq!(own + overflowed, 5 * 11);
        assert!(own > 0 && overflowed > 0, "{own} {overflowed}");
    }

    #[test]
    fn past_the_column_limit_properties_overflow_into_mp_properties() {
        // §4.5, §12 D10: 3 system columns + 2 properties = 5; the rest overflow.
        let (t, b) = run(
            SchemaMode::Monoschema,
            5,
            &[&ev(r#","a":1,"b":2,"c":3,"d":"x""#)],
        );
        assert_eq!(
            names(&t[0]),
            [
                "mp_event_name",
                "time",
                "distinct_id",
                "a",
                "b",
                "mp_properties"
            ]
        );
        let p = columns_of(&b, 0);
        assert!(!p[0].1 && !p[1].1);
        assert!(p[2].1 && p[3].1);
        assert_eq!(p[2].0, 5);
    }

    #[test]
    fn date_like_strings_stay_strings_and_numbers_are_doubles() {
        // §12 D5, D13: no date detection; integers and floats are one class.
        let (t, _) = run(
            SchemaMode::Monoschema,
            9500,
            &[
                &ev(r#","signup_at":"2021-02-03T04:05:06Z","n":1,"big":9007199254740993"#),
                &ev(r#","n":1.5"#),
            ],
        );
        assert_eq!(
            columns(&t[0])[3..],
            [
                (
                    "signup_at".into(),
                    Some("signup_at".into()),
                    TypeClass::String
                ),
                ("n".into(), Some("n".into()), TypeClass::Number),
                ("big".into(), Some("big".into()), TypeClass::Number),
            ]
        );
    }

    #[test]
    fn multischema_makes_one_table_per_cleaned_event_name() {
        // §3.4 #23-27 and #38, §6.2; table names collide per dataset like columns do.
        let (t, b) = run(
            SchemaMode::Multischema,
            9500,
            &[
                r#"{"event":"cloud.route","properties":{"time":1,"a":1}}"#,
                r#"{"event":"SearchEvent","properties":{"time":1,"b":1}}"#,
                r#"{"event":"$identify","properties":{"time":1}}"#,
                r#"{"event":"Signup","properties":{"time":1}}"#,
                r#"{"event":"signup","properties":{"time":1}}"#,
                r#"{"event":"order","properties":{"time":1}}"#,
                r#"{"event":"cloud.route","properties":{"time":1,"c":"x"}}"#,
            ],
        );
        let tables: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            tables,
            [
                "cloud_route",
                "searchevent",
                "mp_identify",
                "signup",
                "signup_1",
                "res_order"
            ]
        );
        assert_eq!(names(&t[0]), ["time", "distinct_id", "a", "c"]);
        assert_eq!(names(&t[1]), ["time", "distinct_id", "b"]);
        assert_eq!(b.events.get(6).table().unwrap().name, "cloud_route");
        assert_eq!(t[4].source_event.as_deref(), Some("signup"));
    }

    #[test]
    fn a_restart_with_the_same_registry_gives_the_same_columns() {
        // §4.3, §12 D14, D15: the registry, not the operator, remembers.
        let reg = Arc::new(MemoryRegistry::new());
        let lines = [
            ev(r#","Plan Type":"a","plan_type":"b","$city":"c""#),
            ev(r#","plan_type":1"#),
        ];
        let mut outs = Vec::new();
        for _ in 0..2 {
            let mut ti = TypeInfer::new(reg.clone(), SchemaMode::Monoschema, 9500);
            let mut b = Batch {
                raw: RawLines::from_lines(&lines),
                ..Default::default()
            };
            MixpanelDecoder::default().process(&mut b).unwrap();
            CleanName.process(&mut b).unwrap();
            ti.process(&mut b).unwrap();
            outs.push(
                (0..b.events.len())
                    .flat_map(|r| columns_of(&b, r))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(
            names(&reg.tables()[0])[3..],
            ["plan_type", "plan_type_1", "mp_city", "plan_type_1_number"]
        );
    }
}
