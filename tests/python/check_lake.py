"""Independent reader: reads every Parquet file of a lake with pyarrow and DuckDB, and checks
each file's column types against the catalog (the embedded SQLite catalog, read with sqlite3).

Usage: check_lake.py LAKE_DIR CATALOG_FILE DATABASE
Prints one JSON object: {"files": N, "rows": N, "duckdb_rows": N, "tables": {...}}; exits 1 on a
mismatch, with the reason.
"""
import json
import os
import sqlite3
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

EXPECTED = {
    "string": pa.string(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def main(lake, catalog, database):
    db = sqlite3.connect(catalog)
    tables = {}
    for tid, name, location in db.execute(
        "SELECT id, name, location FROM tables WHERE database = ?", (database,)
    ):
        cols = db.execute(
            "SELECT name, class FROM columns WHERE table_id = ? ORDER BY ordinal", (tid,)
        ).fetchall()
        parts = {v: loc for v, loc in db.execute(
            "SELECT value, location FROM partitions WHERE table_id = ?", (tid,))}
        tables[name] = {"location": location, "columns": cols, "partitions": parts}

    duck = duckdb.connect()
    files = rows = duck_rows = 0
    summary = {}
    for name, t in tables.items():
        catalog_cols = t["columns"]
        table_rows = 0
        for value, loc in t["partitions"].items():
            folder = loc[len("file://"):]
            yyyy, mm, dd = value.split("-")
            if not folder.rstrip("/").endswith(f"{name}/{yyyy}/{mm}/{dd}"):
                fail(f"partition {value} of {name} is at {folder}")
            for f in sorted(os.listdir(folder)):
                if not f.endswith(".parquet"):
                    continue
                path = os.path.join(folder, f)
                table = pq.read_table(path)
                schema = table.schema
                # Columns are appended only: a file has a prefix of the catalog's columns.
                if len(schema) > len(catalog_cols):
                    fail(f"{path} has {len(schema)} columns, the catalog {len(catalog_cols)}")
                for field, (cname, cls) in zip(schema, catalog_cols):
                    if field.name != cname:
                        fail(f"{path}: column {field.name} where the catalog has {cname}")
                    if field.type != EXPECTED[cls]:
                        fail(f"{path}: {cname} is {field.type}, the catalog says {cls}")
                meta = pq.ParquetFile(path).schema.column(
                    [c for c, _ in catalog_cols].index("time")).logical_type
                if "isAdjustedToUTC=true" not in str(meta) or "timeUnit=microseconds" not in str(meta):
                    fail(f"{path}: time is {meta}, not TIMESTAMP(MICROS, UTC)")
                n = duck.execute("SELECT count(*) FROM read_parquet(?)", [path]).fetchone()[0]
                if n != table.num_rows:
                    fail(f"{path}: DuckDB reads {n} rows, pyarrow {table.num_rows}")
                files += 1
                rows += table.num_rows
                duck_rows += n
                table_rows += table.num_rows
        summary[name] = {"rows": table_rows, "columns": len(catalog_cols)}
    print(json.dumps({"files": files, "rows": rows, "duckdb_rows": duck_rows, "tables": summary}))


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
