//! The local catalog: SQLite in WAL mode, with immediate transactions so that several local
//! processes can share it, and every schema decision is made once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use sluice_engine::commit::CommitStage;
use sluice_engine::component::{
    ColumnAssignment, ColumnDef, ColumnRequest, ProposeTable, TableDef,
};
use sluice_engine::ownership::Claim;
use sluice_engine::{EngineError, Result, TypeClass};

use super::{
    Catalog, CatalogTable, Manifest, NewPartition, Partition, SourcePosition, TableStorage,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS databases(
  name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tables(
  id INTEGER PRIMARY KEY AUTOINCREMENT, database TEXT NOT NULL, name TEXT NOT NULL,
  source_event TEXT, location TEXT NOT NULL, format TEXT NOT NULL DEFAULT 'parquet',
  version INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL, UNIQUE(database, name));
CREATE UNIQUE INDEX IF NOT EXISTS tables_by_event ON tables(database, source_event)
  WHERE source_event IS NOT NULL;
CREATE TABLE IF NOT EXISTS columns(
  table_id INTEGER NOT NULL, ordinal INTEGER NOT NULL, name TEXT NOT NULL, class TEXT NOT NULL,
  source TEXT, overflow INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
  PRIMARY KEY(table_id, ordinal), UNIQUE(table_id, name));
CREATE UNIQUE INDEX IF NOT EXISTS columns_by_source ON columns(table_id, source, class)
  WHERE source IS NOT NULL;
CREATE INDEX IF NOT EXISTS columns_overflowing ON columns(table_id) WHERE overflow = 1;
CREATE TABLE IF NOT EXISTS partitions(
  table_id INTEGER NOT NULL, value TEXT NOT NULL, location TEXT NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY(table_id, value));
CREATE TABLE IF NOT EXISTS source_partitions(
  id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, partition TEXT NOT NULL,
  UNIQUE(source, partition));
CREATE TABLE IF NOT EXISTS manifests(
  id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, stage TEXT NOT NULL,
  objects TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL, finished_at TEXT,
  worker TEXT NOT NULL DEFAULT '', partitions TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS owners(
  sink TEXT NOT NULL, source TEXT NOT NULL, partition TEXT NOT NULL, worker TEXT NOT NULL,
  generation INTEGER NOT NULL, claimed_at TEXT NOT NULL, PRIMARY KEY(sink, source, partition));
CREATE TABLE IF NOT EXISTS positions(
  sink TEXT NOT NULL, source TEXT NOT NULL, partition TEXT NOT NULL, next_offset INTEGER NOT NULL,
  PRIMARY KEY(sink, source, partition));
";

/// The embedded catalog in one SQLite file.
pub struct LocalCatalog {
    conn: Mutex<Connection>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn db_err(what: &str) -> impl FnOnce(rusqlite::Error) -> EngineError + '_ {
    move |e| EngineError::external(format!("local catalog: {what}"), e)
}

/// How long an opening or a transaction waits for other processes' locks.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Opens the file, sets the pragmas, creates and upgrades the schema; on failure, says which
/// step failed.
fn initialise(path: &Path) -> std::result::Result<Connection, (&'static str, rusqlite::Error)> {
    let step = |what: &'static str| move |e| (what, e);
    let conn = Connection::open(path).map_err(step("opening"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(step("setting the busy timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(step("enabling WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(step("setting synchronous"))?;
    conn.execute_batch(SCHEMA)
        .map_err(step("creating the schema"))?;
    // Catalogs made before manifests recorded their worker and partitions. Several
    // processes may open an old file at once: whoever comes second finds the columns.
    for (column, ddl) in [
        (
            "worker",
            "ALTER TABLE manifests ADD COLUMN worker TEXT NOT NULL DEFAULT ''",
        ),
        (
            "partitions",
            "ALTER TABLE manifests ADD COLUMN partitions TEXT NOT NULL DEFAULT '[]'",
        ),
    ] {
        let has: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('manifests') WHERE name = ?1",
                [column],
                |r| r.get(0),
            )
            .map_err(step("reading the schema"))?;
        if has == 0 {
            if let Err(e) = conn.execute_batch(ddl) {
                if !e.to_string().contains("duplicate column") {
                    return Err(("upgrading the manifests table", e));
                }
            }
        }
    }
    Ok(conn)
}

impl LocalCatalog {
    /// Opens (and creates) the catalog file.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| EngineError::external(format!("creating {}", dir.display()), e))?;
            }
        }
        // Several workers started together may all create the file: switching it to WAL
        // takes a lock for which SQLite answers "busy" at once, without its busy handler.
        // Every step below is idempotent, so a busy answer retries the whole opening.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        let conn = loop {
            match initialise(path) {
                Ok(conn) => break conn,
                Err((_, e)) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err((what, e)) => return Err(db_err(what)(e)),
            }
        };
        Ok(LocalCatalog {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| EngineError::Internal("catalog lock poisoned".into()))
    }

    /// Runs `f` on the connection, whose commits wait for the disk (`synchronous = FULL`,
    /// set on every call: a registry transaction that failed half-way cannot leave it off).
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut c = self.lock()?;
        c.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err("setting synchronous"))?;
        f(&mut c)
    }

    /// [`Self::with`] for the schema registry's transactions (a new table, a new column):
    /// they commit without waiting for the disk (`synchronous = NORMAL`); everything else
    /// waits (`FULL`).
    ///
    /// A wide table's thousands of new columns each waited for an fsync, which was most of
    /// `type-infer`'s time. Nothing is lost by not waiting: in WAL mode, commits reach the
    /// disk in the order they were made, and a column matters only to the files of a later
    /// data commit, whose own fsync of the log carries the column with it. A crash of the
    /// machine may forget a column no committed file uses; it is assigned again, the same way
    /// or another, before any file uses it.
    fn with_registry<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut c = self.lock()?;
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err("setting synchronous"))?;
        f(&mut c)
    }
}

/// A column from a row of `SELECT ordinal, name, class, source FROM columns`.
fn column_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ColumnDef> {
    let class: String = r.get(2)?;
    Ok(ColumnDef {
        ordinal: r.get(0)?,
        name: r.get(1)?,
        class: TypeClass::parse(&class).unwrap_or(TypeClass::String),
        source: r.get(3)?,
    })
}

/// A table's overflow column (`mp_properties`). Every property past the column limit asks
/// for it once: the partial index `columns_overflowing` finds it, where a scan of the table's
/// columns made each such property cost the table's width (16,000 property names, 32,000
/// names and types, over a 9,500-column table: three quarters of a run went to these scans).
const OVERFLOW_COLUMN: &str =
    "SELECT ordinal, name, class, source FROM columns WHERE table_id = ?1 AND overflow = 1";

/// The column for `w` in `table`, made in `tx` if it is new (then `true`); the caller
/// commits. The same decisions in the same order as one transaction per column would make.
fn column_in(
    tx: &rusqlite::Transaction<'_>,
    table: i64,
    w: &ColumnRequest<'_>,
    max_columns: u32,
) -> Result<(ColumnAssignment, bool)> {
    let (raw, class) = (w.raw, w.class);
    // Statements are prepared once per connection (`prepare_cached`): a batch may make
    // thousands of columns, and parsing the SQL again for each was a cost of its own.
    let read = |sql: &str, p: &[&dyn rusqlite::ToSql]| {
        let mut q = tx.prepare_cached(sql).map_err(db_err("reading a column"))?;
        q.query_row(p, column_row)
            .optional()
            .map_err(db_err("reading a column"))
    };
    if let Some(def) = read(
        "SELECT ordinal, name, class, source FROM columns WHERE table_id = ?1 AND source = ?2 AND class = ?3",
        &[&table, &raw, &class.as_str()],
    )? {
        return Ok((ColumnAssignment::Column(def), false));
    }
    // Ordinals are dense from 0: the next is one past the largest, which the primary key
    // finds without counting every column (a table of thousands of columns would make each
    // new column cost as much as all those before it).
    let count: i64 = tx
        .prepare_cached("SELECT coalesce(max(ordinal) + 1, 0) FROM columns WHERE table_id = ?1")
        .and_then(|mut q| q.query_row(params![table], |r| r.get(0)))
        .map_err(db_err("counting columns"))?;
    let ts = now();
    if count >= max_columns as i64 {
        if let Some(d) = read(OVERFLOW_COLUMN, &[&table])? {
            return Ok((ColumnAssignment::Overflow(d), false));
        }
        tx.execute(
            "INSERT INTO columns(table_id, ordinal, name, class, source, overflow, created_at) VALUES (?1, ?2, 'mp_properties', 'string', NULL, 1, ?3)",
            params![table, count, ts],
        )
        .map_err(db_err("creating mp_properties"))?;
        let def = ColumnDef {
            ordinal: count as u32,
            name: "mp_properties".into(),
            class: TypeClass::String,
            source: None,
        };
        return Ok((ColumnAssignment::Overflow(def), true));
    }
    // The property's first column, among its (at most one per class) columns, found by
    // `columns_by_source`: ordering in SQL lets SQLite walk the whole table in ordinal order
    // instead.
    let first: Option<String> = {
        let mut q = tx
            .prepare_cached("SELECT ordinal, name FROM columns WHERE table_id = ?1 AND source = ?2")
            .map_err(db_err("reading a column"))?;
        let found = q
            .query_map(params![table, raw], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db_err("reading a column"))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_err("reading a column"))?;
        found.into_iter().min_by_key(|(o, _)| *o).map(|(_, n)| n)
    };
    let taken = |n: &str| {
        tx.prepare_cached("SELECT 1 FROM columns WHERE table_id = ?1 AND name = ?2")
            .and_then(|mut q| q.query_row(params![table, n], |_| Ok(())).optional())
            .map(|o| o.is_some())
            .unwrap_or(true)
    };
    let name = (w.propose)(first.as_deref(), &taken);
    tx.prepare_cached(
        "INSERT INTO columns(table_id, ordinal, name, class, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut q| q.execute(params![table, count, name, class.as_str(), raw, ts]))
    .map_err(db_err("creating a column"))?;
    Ok((
        ColumnAssignment::Column(ColumnDef {
            ordinal: count as u32,
            name,
            class,
            source: Some(raw.to_string()),
        }),
        true,
    ))
}

/// Refuses (fences) a change to a commit that was resolved, or one of whose partitions another
/// worker has claimed since: that worker resolves the commit from what it found at its claim,
/// so nothing may be added to it (files made visible for it would outlive its resolution).
fn still_open(tx: &rusqlite::Transaction<'_>, manifest: i64) -> Result<()> {
    let row: Option<(String, String, String, String)> = tx
        .query_row(
            "SELECT sink, worker, stage, partitions FROM manifests WHERE id = ?1",
            params![manifest],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(db_err("reading a manifest"))?;
    let resolved = || {
        EngineError::Fenced(format!(
            "commit {manifest} was resolved by the partitions' new owner"
        ))
    };
    let Some((sink, worker, stage, partitions)) = row else {
        return Err(resolved());
    };
    if stage == "done" || stage == "abandoned" {
        return Err(resolved());
    }
    let partitions: Vec<(String, String)> = serde_json::from_str(&partitions)
        .map_err(|e| EngineError::Internal(format!("manifest {manifest} partitions: {e}")))?;
    for (source, partition) in partitions {
        let owner: Option<String> = tx
            .query_row(
                "SELECT worker FROM owners WHERE sink = ?1 AND source = ?2 AND partition = ?3",
                params![sink, source, partition],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err("reading an owner"))?;
        if let Some(o) = owner.filter(|o| *o != worker) {
            return Err(EngineError::Fenced(format!(
                "partition {partition} of `{source}` now belongs to worker {o}"
            )));
        }
    }
    Ok(())
}

fn unfinished_in(c: &Connection, sink: &str) -> Result<Vec<Manifest>> {
    let mut stmt = c
        .prepare(
            "SELECT id, stage, objects, worker, partitions FROM manifests
             WHERE sink = ?1 AND stage NOT IN ('done', 'abandoned') ORDER BY id",
        )
        .map_err(db_err("reading manifests"))?;
    let rows = stmt
        .query_map(params![sink], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .map_err(db_err("reading manifests"))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(db_err("reading manifests"))?;
    rows.into_iter()
        .map(|(id, stage, objects, worker, partitions)| {
            let bad = |what: &str, e: serde_json::Error| {
                EngineError::Internal(format!("manifest {id} {what}: {e}"))
            };
            Ok(Manifest {
                id,
                stage: CommitStage::parse(&stage).ok_or_else(|| {
                    EngineError::Internal(format!("manifest {id} has unknown stage {stage}"))
                })?,
                objects: serde_json::from_str(&objects).map_err(|e| bad("objects", e))?,
                worker,
                partitions: serde_json::from_str(&partitions).map_err(|e| bad("partitions", e))?,
            })
        })
        .collect()
}

/// The columns of `table` from ordinal `from` on, in order.
fn columns_of(c: &Connection, table: i64, from: u32) -> Result<Vec<ColumnDef>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT ordinal, name, class, source FROM columns
             WHERE table_id = ?1 AND ordinal >= ?2 ORDER BY ordinal",
        )
        .map_err(db_err("reading columns"))?;
    let columns = stmt
        .query_map(params![table, from], column_row)
        .map_err(db_err("reading columns"))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(db_err("reading columns"))?;
    Ok(columns)
}

fn load_def(c: &Connection, table: i64) -> Result<TableDef> {
    let (name, source_event): (String, Option<String>) = c
        .query_row(
            "SELECT name, source_event FROM tables WHERE id = ?1",
            params![table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err("reading a table"))?;
    let columns = columns_of(c, table, 0)?;
    Ok(TableDef {
        id: table,
        name,
        source_event,
        columns,
    })
}

impl Catalog for LocalCatalog {
    fn ensure_database(&self, database: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO databases(name, created_at) VALUES (?1, ?2)",
                params![database, now()],
            )
            .map_err(db_err("creating the database"))?;
            Ok(())
        })
    }

    fn tables(&self, database: &str) -> Result<Vec<CatalogTable>> {
        self.with(|c| {
            let rows: Vec<(i64, String, String)> = {
                let mut stmt = c
                    .prepare(
                        "SELECT id, location, format FROM tables WHERE database = ?1 ORDER BY name",
                    )
                    .map_err(db_err("listing tables"))?;
                let rows = stmt
                    .query_map(params![database], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(db_err("listing tables"))?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(db_err("listing tables"))?;
                rows
            };
            rows.into_iter()
                .map(|(id, location, format)| {
                    Ok(CatalogTable {
                        def: load_def(c, id)?,
                        location,
                        format,
                    })
                })
                .collect()
        })
    }

    fn partitions(&self, table_id: i64) -> Result<Vec<Partition>> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT value, location FROM partitions WHERE table_id = ?1 ORDER BY value",
                )
                .map_err(db_err("listing partitions"))?;
            let rows = stmt
                .query_map(params![table_id], |r| {
                    Ok(Partition {
                        value: r.get(0)?,
                        location: r.get(1)?,
                    })
                })
                .map_err(db_err("listing partitions"))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(db_err("listing partitions"))?;
            Ok(rows)
        })
    }

    fn table(
        &self,
        database: &str,
        storage_for: &dyn Fn(&str) -> TableStorage,
        source_event: Option<&str>,
        fixed_name: Option<&str>,
        system: &[(&str, TypeClass)],
        propose: ProposeTable<'_>,
    ) -> Result<TableDef> {
        self.with_registry(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err("starting a transaction"))?;
            let existing: Option<i64> = match (source_event, fixed_name) {
                (Some(ev), _) => tx
                    .query_row(
                        "SELECT id FROM tables WHERE database = ?1 AND source_event = ?2",
                        params![database, ev],
                        |r| r.get(0),
                    )
                    .optional(),
                (None, Some(name)) => tx
                    .query_row(
                        "SELECT id FROM tables WHERE database = ?1 AND name = ?2 AND source_event IS NULL",
                        params![database, name],
                        |r| r.get(0),
                    )
                    .optional(),
                (None, None) => Ok(None),
            }
            .map_err(db_err("finding a table"))?;
            let id = match existing {
                Some(id) => id,
                None => {
                    let name = match fixed_name {
                        Some(n) => n.to_string(),
                        None => {
                            let taken = |n: &str| {
                                tx.query_row(
                                    "SELECT 1 FROM tables WHERE database = ?1 AND name = ?2",
                                    params![database, n],
                                    |_| Ok(()),
                                )
                                .optional()
                                .map(|o| o.is_some())
                                .unwrap_or(true)
                            };
                            propose(&taken)
                        }
                    };
                    let ts = now();
                    let storage = storage_for(&name);
                    tx.execute(
                        "INSERT INTO tables(database, name, source_event, location, format, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![database, name, source_event, storage.location, storage.format, ts],
                    )
                    .map_err(db_err("creating a table"))?;
                    let id = tx.last_insert_rowid();
                    for (i, (col, class)) in system.iter().enumerate() {
                        tx.execute(
                            "INSERT INTO columns(table_id, ordinal, name, class, source, created_at) VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
                            params![id, i as i64, col, class.as_str(), ts],
                        )
                        .map_err(db_err("creating system columns"))?;
                    }
                    id
                }
            };
            let def = load_def(&tx, id)?;
            tx.commit().map_err(db_err("committing a table"))?;
            Ok(def)
        })
    }

    fn columns(
        &self,
        table: i64,
        wanted: &[ColumnRequest<'_>],
        max_columns: u32,
    ) -> Result<Vec<ColumnAssignment>> {
        self.with_registry(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err("starting a transaction"))?;
            let mut out = Vec::with_capacity(wanted.len());
            let mut created = false;
            for w in wanted {
                let (assignment, new) = column_in(&tx, table, w, max_columns)?;
                created |= new;
                out.push(assignment);
            }
            if created {
                tx.execute(
                    "UPDATE tables SET version = version + 1 WHERE id = ?1",
                    params![table],
                )
                .map_err(db_err("bumping the table version"))?;
                tx.commit().map_err(db_err("committing columns"))?;
            }
            Ok(out)
        })
    }

    fn table_def(&self, table: i64) -> Result<TableDef> {
        self.with(|c| load_def(c, table))
    }

    fn columns_from(&self, table: i64, from: u32) -> Result<Vec<ColumnDef>> {
        self.with(|c| columns_of(c, table, from))
    }

    fn partition_number(&self, source: &str, partition: &str) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO source_partitions(source, partition) VALUES (?1, ?2)",
                params![source, partition],
            )
            .map_err(db_err("numbering a partition"))?;
            c.query_row(
                "SELECT id FROM source_partitions WHERE source = ?1 AND partition = ?2",
                params![source, partition],
                |r| r.get(0),
            )
            .map_err(db_err("numbering a partition"))
        })
    }

    fn claim(
        &self,
        sink: &str,
        worker: &str,
        source: &str,
        partitions: &[String],
    ) -> Result<(HashMap<String, Claim>, Vec<Manifest>)> {
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err("starting a transaction"))?;
            let ts = now();
            let mut claims = HashMap::new();
            for p in partitions {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT worker FROM owners WHERE sink = ?1 AND source = ?2 AND partition = ?3",
                        params![sink, source, p],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err("reading an owner"))?;
                let continued = owner.as_deref() == Some(worker);
                if !continued {
                    tx.execute(
                        "INSERT INTO owners(sink, source, partition, worker, generation, claimed_at)
                         VALUES (?1, ?2, ?3, ?4, 1, ?5)
                         ON CONFLICT(sink, source, partition) DO UPDATE SET worker = excluded.worker,
                           generation = generation + 1, claimed_at = excluded.claimed_at",
                        params![sink, source, p, worker, ts],
                    )
                    .map_err(db_err("claiming a partition"))?;
                }
                let next_offset: Option<i64> = tx
                    .query_row(
                        "SELECT next_offset FROM positions WHERE sink = ?1 AND source = ?2 AND partition = ?3",
                        params![sink, source, p],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err("reading a position"))?;
                claims.insert(
                    p.clone(),
                    Claim {
                        next_offset: next_offset.map(|o| o as u64),
                        continued,
                    },
                );
            }
            let orphans: Vec<Manifest> = unfinished_in(&tx, sink)?
                .into_iter()
                .filter(|m| {
                    m.worker != worker
                        && (m.partitions.is_empty()
                            || m
                                .partitions
                                .iter()
                                .any(|(s, p)| s == source && partitions.contains(p)))
                })
                .collect();
            tx.commit().map_err(db_err("claiming partitions"))?;
            Ok((claims, orphans))
        })
    }

    fn begin_commit(
        &self,
        sink: &str,
        worker: &str,
        partitions: &[(String, String)],
    ) -> Result<i64> {
        let json = serde_json::to_string(partitions)
            .map_err(|e| EngineError::Internal(format!("manifest: {e}")))?;
        self.with(|c| {
            c.execute(
                "INSERT INTO manifests(sink, stage, created_at, worker, partitions) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![sink, CommitStage::Planned.as_str(), now(), worker, json],
            )
            .map_err(db_err("starting a commit"))?;
            Ok(c.last_insert_rowid())
        })
    }

    fn plan_objects(&self, manifest: i64, objects: &[String]) -> Result<()> {
        let json = serde_json::to_string(objects)
            .map_err(|e| EngineError::Internal(format!("manifest: {e}")))?;
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err("starting a transaction"))?;
            still_open(&tx, manifest)?;
            tx.execute(
                "UPDATE manifests SET objects = ?2 WHERE id = ?1",
                params![manifest, json],
            )
            .map_err(db_err("recording a commit's objects"))?;
            tx.commit().map_err(db_err("recording a commit's objects"))
        })
    }

    fn set_stage(&self, manifest: i64, stage: CommitStage) -> Result<()> {
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err("starting a transaction"))?;
            still_open(&tx, manifest)?;
            tx.execute(
                "UPDATE manifests SET stage = ?2 WHERE id = ?1",
                params![manifest, stage.as_str()],
            )
            .map_err(db_err("advancing a commit"))?;
            tx.commit().map_err(db_err("advancing a commit"))
        })
    }

    fn finish_commit(
        &self,
        manifest: i64,
        sink: &str,
        worker: &str,
        partitions: &[NewPartition],
        positions: &[SourcePosition],
    ) -> Result<()> {
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err("starting a transaction"))?;
            let stage: Option<String> = tx
                .query_row(
                    "SELECT stage FROM manifests WHERE id = ?1",
                    params![manifest],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("reading a manifest"))?;
            if stage.as_deref() != Some(CommitStage::ObjectsWritten.as_str())
                && stage.as_deref() != Some(CommitStage::Planned.as_str())
            {
                return Err(EngineError::Fenced(format!(
                    "commit {manifest} was resolved by the partitions' new owner"
                )));
            }
            for p in positions {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT worker FROM owners WHERE sink = ?1 AND source = ?2 AND partition = ?3",
                        params![sink, p.source, p.partition],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err("reading an owner"))?;
                if let Some(owner) = owner.filter(|o| o != worker) {
                    return Err(EngineError::Fenced(format!(
                        "partition {} of `{}` now belongs to worker {owner}",
                        p.partition, p.source
                    )));
                }
                let current: u64 = tx
                    .query_row(
                        "SELECT next_offset FROM positions WHERE sink = ?1 AND source = ?2 AND partition = ?3",
                        params![sink, p.source, p.partition],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                    .map_err(db_err("reading a position"))?
                    .map_or(0, |v| v as u64);
                if current != p.expected {
                    return Err(EngineError::Fenced(format!(
                        "partition {} of `{}` was committed up to {current} since this epoch \
                         started from {}",
                        p.partition, p.source, p.expected
                    )));
                }
            }
            let ts = now();
            for p in partitions {
                tx.execute(
                    "INSERT INTO partitions(table_id, value, location, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(table_id, value) DO UPDATE SET location = excluded.location
                     WHERE location != excluded.location",
                    params![p.table_id, p.value, p.location, ts],
                )
                .map_err(db_err("registering a partition"))?;
            }
            for p in positions {
                tx.execute(
                    "INSERT INTO positions(sink, source, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(sink, source, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    params![sink, p.source, p.partition, p.next_offset as i64],
                )
                .map_err(db_err("committing a position"))?;
            }
            tx.execute(
                "UPDATE manifests SET stage = ?2, finished_at = ?3 WHERE id = ?1",
                params![manifest, CommitStage::Done.as_str(), ts],
            )
            .map_err(db_err("finishing a commit"))?;
            tx.commit().map_err(db_err("finishing a commit"))
        })
    }

    fn unfinished(&self, sink: &str) -> Result<Vec<Manifest>> {
        self.with(|c| unfinished_in(c, sink))
    }

    fn abandon(&self, manifest: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE manifests SET stage = 'abandoned', finished_at = ?2 WHERE id = ?1",
                params![manifest, now()],
            )
            .map_err(db_err("abandoning a commit"))?;
            Ok(())
        })
    }

    fn schema_version(&self, database: &str) -> Result<i64> {
        self.with(|c| {
            c.query_row(
                "SELECT coalesce(sum(version), 0) + count(*) FROM tables WHERE database = ?1",
                params![database],
                |r| r.get(0),
            )
            .map_err(db_err("reading the schema version"))
        })
    }

    fn name_mapping(&self, database: &str) -> Result<serde_json::Value> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT t.name, t.source_event, c.name, c.source, c.class, c.overflow, c.created_at
                     FROM tables t JOIN columns c ON c.table_id = t.id
                     WHERE t.database = ?1 ORDER BY t.name, c.ordinal",
                )
                .map_err(db_err("reading the schema"))?;
            let rows = stmt
                .query_map(params![database], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, bool>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                })
                .map_err(db_err("reading the schema"))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(db_err("reading the schema"))?;
            Ok(super::name_mapping_of(rows.iter().map(
                |(table, event, column, source, class, overflow, created)| super::MappingRow {
                    table,
                    source_event: event.as_deref(),
                    column,
                    source: source.as_deref(),
                    class,
                    overflow: *overflow,
                    created_at: created,
                },
            )))
        })
    }

    fn positions(&self, sink: &str) -> Result<HashMap<(String, String), u64>> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT source, partition, next_offset FROM positions WHERE sink = ?1")
                .map_err(db_err("reading positions"))?;
            let rows = stmt
                .query_map(params![sink], |r| {
                    Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)? as u64))
                })
                .map_err(db_err("reading positions"))?
                .collect::<std::result::Result<HashMap<_, _>, _>>()
                .map_err(db_err("reading positions"))?;
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overflow_column_is_found_by_its_index_not_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let cat = LocalCatalog::open(&dir.path().join("c.sqlite")).unwrap();
        let conn = cat.conn.lock().unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {OVERFLOW_COLUMN}"))
            .unwrap()
            .query_map(params![1], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|d| d.contains("columns_overflowing")),
            "{plan:?}"
        );
    }

    #[test]
    fn many_openers_of_a_new_catalog_all_get_it() {
        // Two workers started together both create the file and switch it to WAL; SQLite
        // answers "database is locked" to the loser without calling the busy handler.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("c{round}.sqlite"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        LocalCatalog::open(&path).map(|c| c.positions("sink").map(|p| p.len()))
                    })
                })
                .collect();
            for o in openers {
                let got = o.join().unwrap();
                assert!(matches!(got, Ok(Ok(0))), "round {round}: {got:?}");
            }
        }
    }

    #[test]
    fn catalogs_from_before_ownership_are_upgraded_and_two_openers_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE manifests(
                   id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, stage TEXT NOT NULL,
                   objects TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL, finished_at TEXT);
                 INSERT INTO manifests(sink, stage, created_at) VALUES ('s', 'planned', 'then');",
            )
            .unwrap();
        }
        let a = LocalCatalog::open(&path).unwrap();
        let b = LocalCatalog::open(&path).unwrap();
        let old = a.unfinished("s").unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].worker, "");
        assert!(old[0].partitions.is_empty());
        let m = b
            .begin_commit("s", "W", &[("src".into(), "p".into())])
            .unwrap();
        let got = a.unfinished("s").unwrap();
        assert_eq!(got.last().map(|m| m.id), Some(m));
        assert_eq!(got.last().map(|m| m.worker.as_str()), Some("W"));
    }
}
