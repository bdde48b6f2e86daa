//! The operators end to end: filters, schema evolution, name-mapping files, dates.

mod common;
use common::*;

use std::path::Path;

fn topology(dir: &Path, input: &Path, operators: &str) -> String {
    let t = format!(
        "sources:\n  events: {{type: file, path: '{}'}}\noperators:\n{operators}\nsinks:\n  lake:\n    type: lake\n    inputs: [dates]\n    project_id: 7\n    store: {{type: local, path: '{}'}}\n    catalog: {{type: local, path: '{}', database: test}}\n",
        input.display(),
        dir.join("lake").display(),
        dir.join("catalog.sqlite").display(),
    );
    let p = dir.join("t.yaml");
    std::fs::write(&p, t).unwrap();
    p.display().to_string()
}

const CHAIN: &str = "  clean: {type: clean-name, inputs: [events]}\n  nested: {type: stringify-nested, inputs: [clean]}\n  types: {type: type-infer, inputs: [nested]}\n  dates: {type: partition-by-date, inputs: [types], timezone: UTC}";

fn query(t: &str, sql: &str) -> String {
    stdout(&run_ok(sluice().args(["query", t, sql, "--format", "csv"])))
}

#[test]
fn filters_keep_what_the_whitelist_and_the_predicate_say() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    gen(&input, 3000, 5, 0.01);
    let ops = "  keep:\n    type: filter\n    inputs: [events]\n    events: [Page View, Purchase, Search]\n    where: 'properties[\"$screen_width\"] >= 1000 and defined(properties[\"$city\"])'\n  clean: {type: clean-name, inputs: [keep]}\n  types: {type: type-infer, inputs: [clean]}\n  dates: {type: partition-by-date, inputs: [types], timezone: UTC}";
    let t = topology(dir.path(), &input, ops);
    run_ok(sluice().args(["run", &t]));
    // The same selection, made independently.
    let want = read_lines(&input)
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| classify(&v.to_string()).is_some())
        .filter(|v| {
            ["Page View", "Purchase", "Search"].contains(&v["event"].as_str().unwrap_or(""))
        })
        .filter(|v| {
            v["properties"]["$screen_width"]
                .as_f64()
                .is_some_and(|w| w >= 1000.0)
        })
        .filter(|v| !v["properties"]["$city"].is_null())
        .count();
    let got = query(&t, "SELECT count(*) FROM mp_master_event");
    assert_eq!(got.lines().nth(1).unwrap(), want.to_string());
    assert!(want > 100, "{want}");
}

#[test]
fn a_new_property_appends_a_column_and_older_files_read_it_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a.ndjson");
    let second = dir.path().join("b.ndjson");
    std::fs::write(&first, "{\"event\":\"E\",\"properties\":{\"time\":1700000000,\"$insert_id\":\"a\",\"plan\":\"free\"}}\n").unwrap();
    std::fs::write(
        &second,
        "{\"event\":\"E\",\"properties\":{\"time\":1700000001,\"$insert_id\":\"b\",\"plan\":\"pro\",\"Seats Count\":3}}\n",
    )
    .unwrap();
    let t = topology(dir.path(), &first, CHAIN);
    run_ok(sluice().args(["run", &t]));
    run_ok(sluice().args([
        "run",
        &t,
        "--set",
        &format!("sources.events.path={}", second.display()),
    ]));
    let rows = query(
        &t,
        "SELECT mp_insert_id, plan, seats_count FROM mp_master_event ORDER BY mp_insert_id",
    );
    assert_eq!(rows, "mp_insert_id,plan,seats_count\na,free,\nb,pro,3.0\n");
    // The column was appended, in the catalog and in the name map.
    let map: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("lake/7/schema/events.json")).unwrap(),
    )
    .unwrap();
    let cols: Vec<&String> = map["tables"]["mp_master_event"]["columns"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        cols,
        [
            "mp_event_name",
            "time",
            "distinct_id",
            "mp_insert_id",
            "plan",
            "seats_count"
        ]
    );
    assert_eq!(
        map["tables"]["mp_master_event"]["columns"]["seats_count"]["source"],
        "Seats Count"
    );
    assert_eq!(
        map["tables"]["mp_master_event"]["columns"]["seats_count"]["type"],
        "number"
    );
    assert_eq!(
        map["tables"]["mp_master_event"]["source_event"],
        serde_json::Value::Null
    );
}

#[test]
fn times_in_seconds_and_milliseconds_land_on_the_project_day() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    // 2021-03-14T07:59:59Z is 23:59:59 on 03-13 in Los Angeles; 08:00:00Z is 00:00 on 03-14
    // (PST); the same instants in milliseconds; and Kolkata's midnight seen from LA.
    let lines = [
        (1_615_708_799i64, false, "2021-03-13"),
        (1_615_708_800, false, "2021-03-14"),
        (1_615_708_799_999, true, "2021-03-13"),
        (1_615_708_800_000, true, "2021-03-14"),
        (1_615_791_600, false, "2021-03-15"),
    ];
    let text: String = lines
        .iter()
        .enumerate()
        .map(|(i, (t, _, _))| {
            format!("{{\"event\":\"E\",\"properties\":{{\"time\":{t},\"$insert_id\":\"{i}\"}}}}\n")
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let ops = CHAIN.replace("timezone: UTC", "timezone: America/Los_Angeles");
    let t = topology(dir.path(), &input, &ops);
    run_ok(sluice().args(["run", &t]));
    let rows = query(
        &t,
        "SELECT mp_insert_id, mp_date FROM mp_master_event ORDER BY mp_insert_id",
    );
    let want: String = std::iter::once("mp_insert_id,mp_date\n".to_string())
        .chain(
            lines
                .iter()
                .enumerate()
                .map(|(i, (_, _, d))| format!("{i},{d}\n")),
        )
        .collect();
    assert_eq!(rows, want);
    assert!(dir
        .path()
        .join("lake/7/mp_master_event/2021/03/13")
        .is_dir());
}

#[test]
fn overflow_properties_land_in_mp_properties_under_their_original_names() {
    // SPEC §4.5, §12 D10, with a small column limit.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(
        &input,
        "{\"event\":\"E\",\"properties\":{\"time\":1700000000,\"a\":1,\"b\":2,\"Odd Name\":\"x\",\"nested\":{\"k\":[1,2]}}}\n",
    )
    .unwrap();
    let ops = CHAIN.replace(
        "types: {type: type-infer, inputs: [nested]}",
        "types: {type: type-infer, inputs: [nested], max_columns: 5}",
    );
    let t = topology(dir.path(), &input, &ops);
    run_ok(sluice().args(["run", &t]));
    let rows = stdout(&run_ok(sluice().args([
        "query",
        &t,
        "SELECT a, b, mp_properties FROM mp_master_event",
        "--format",
        "json",
    ])));
    let row: serde_json::Value = serde_json::from_str(rows.trim()).unwrap();
    assert_eq!(row["a"], 1.0);
    assert_eq!(row["b"], 2.0);
    let overflow: serde_json::Value =
        serde_json::from_str(row["mp_properties"].as_str().unwrap()).unwrap();
    assert_eq!(
        overflow,
        serde_json::json!({"Odd Name": "x", "nested": {"k": [1, 2]}})
    );
}

#[test]
fn mp_event_name_holds_the_original_name_or_the_cleaned_one() {
    // SPEC §3.5, §12 D1.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(
        &input,
        "{\"event\":\"Add To Cart\",\"properties\":{\"time\":1700000000}}\n",
    )
    .unwrap();
    let t = topology(dir.path(), &input, CHAIN);
    run_ok(sluice().args(["run", &t]));
    assert_eq!(
        query(&t, "SELECT mp_event_name FROM mp_master_event"),
        "mp_event_name\nAdd To Cart\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let ops = CHAIN.replace(
        "inputs: [nested]}",
        "inputs: [nested], event_name: cleaned}",
    );
    let t = topology(dir.path(), &input, &ops);
    run_ok(sluice().args(["run", &t]));
    assert_eq!(
        query(&t, "SELECT mp_event_name FROM mp_master_event"),
        "mp_event_name\nadd_to_cart\n"
    );
}
