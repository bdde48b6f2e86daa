//! The real third-party files in `../shared/data` (messy names, type collisions, deep
//! nesting, unicode) all run through; for each, the rows, the dead letters and the columns are
//! what this file says, and nothing is lost: rows + dead letters = lines (or records) read.
//!
//! The files are not the project's: where `../shared/data` is absent the test says so and
//! skips, unless `SLUICE_REQUIRE_SHARED=1` (set by the test script), where it fails.

mod common;
use common::*;

use std::path::{Path, PathBuf};

struct Case {
    file: &'static str,
    /// The file source's settings besides `type` and `path`, as JSON.
    source: &'static str,
    /// Lines (or documents) read.
    read: u64,
    rows: u64,
    dead: u64,
    /// Columns of the table, system columns included.
    columns: usize,
    /// The first property columns, in order, as `name:class`.
    first: &'static str,
}

/// `records` settings choose the name, time and properties of files in other shapes (see
/// `../shared/data/SOURCES.md`); CSV is not read: its lines are dead letters.
const CASES: &[Case] = &[
    Case { file: "mixpanel/duckdb_issue-10751/10751.json", source: r#"{}"#, read: 3, rows: 3, dead: 0, columns: 16, first: "mp_app_version_string:string,mp_city:string,mp_insert_id:string,mp_os:string,platform:string,audio:number,collection:number,guide:number,id:string,ipcountry:string,length:string" },
    Case { file: "mixpanel/ak--47_mixpanel-import_noise/input.ndjson", source: r#"{}"#, read: 20, rows: 20, dead: 0, columns: 41, first: "mp_insert_id:string,plan:string,mp_preshuffle_distinct_id:string,mp_is_reshuffled:boolean,mp_is_deleted:boolean,mp_inserted_at:number,mp_delete_event_name:string,mp_delete_insert_id:string,mp_delete_inserted_before:number,mp_mp_api_endpoint:string,mp_mp_api_timestamp_ms:number" },
    Case { file: "mixpanel/mixpanel_mixpanel-utils_fixtures/events.ndjson", source: r#"{}"#, read: 3, rows: 3, dead: 0, columns: 7, first: "mp_insert_id:string,page:string,button:string,amount:number" },
    Case { file: "mixpanel/mixpanel_mixpanel-utils_fixtures/events.csv", source: r#"{}"#, read: 4, rows: 0, dead: 4, columns: 0, first: "" },
    Case { file: "mixpanel/mixpanel_mixpanel-utils_fixtures/june_events.csv", source: r#"{}"#, read: 3, rows: 0, dead: 3, columns: 0, first: "" },
    Case { file: "mixpanel/mixpanel_mixpanel-utils_fixtures/json_dir/batch1.json", source: r#"{"format":"records","records":{"event_field":"event","time_field":"properties.time","distinct_id_field":"properties.distinct_id","properties_field":"properties"},"document":true}"#, read: 1, rows: 2, dead: 0, columns: 4, first: "mp_insert_id:string" },
    Case { file: "mixpanel/mixpanel_mixpanel-utils_fixtures/json_dir/batch2.json", source: r#"{"format":"records","records":{"event_field":"event","time_field":"properties.time","distinct_id_field":"properties.distinct_id","properties_field":"properties"},"document":true}"#, read: 1, rows: 1, dead: 0, columns: 4, first: "mp_insert_id:string" },
    Case { file: "mixpanel/airbytehq_airbyte_source-mixpanel/expected_records.jsonl", source: r#"{"format":"records","records":{"event_field":"data.event","time_field":"data.time","distinct_id_field":"data.distinct_id","properties_field":"data"}}"#, read: 19, rows: 1, dead: 18, columns: 79, first: "browser:string,city:string,created:string,email:string,first_name:string,import:string,initial_referrer:string,insert_id:string,last_name:string,mp_api_endpoint:string,mp_api_timestamp_ms:string" },
    Case { file: "mixpanel/mixpanel_mixpanel-utils_fixtures/amplitude.json", source: r#"{"format":"records","records":{"event_field":"event_type","time_field":"event_time","distinct_id_field":"user_id","properties_field":"event_properties"}}"#, read: 1, rows: 1, dead: 0, columns: 4, first: "button:string" },
    Case { file: "mixpanel/mixpanel_mixpanel-utils_fixtures/mparticle.jsonl", source: r#"{"format":"records","records":{"records_at":"events","event_field":"data.event_name","time_field":"data.timestamp_unixtime_ms","properties_field":"data.custom_attributes"}}"#, read: 1, rows: 1, dead: 0, columns: 4, first: "product:string" },
    Case { file: "messy/duckdb_json-edge-cases/11152.json", source: r#"{"format":"records","records":{"event_name":"record","default_time":1700000000}}"#, read: 5, rows: 3, dead: 2, columns: 10, first: "filesize:number,totalstreamresptimems:number,lastsyncdiffms:number,crap:number,tmems:number,lastsy:number,blaa:string" },
    Case { file: "messy/duckdb_json-edge-cases/different_schemas.ndjson", source: r#"{"format":"records","records":{"event_name":"record","default_time":1700000000}}"#, read: 5, rows: 5, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/duckdb_json-edge-cases/duplicate_key.ndjson", source: r#"{"format":"records","records":{"event_name":"record","default_time":1700000000}}"#, read: 5, rows: 5, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/duckdb_json-edge-cases/format_string_key.json", source: r#"{"format":"records","records":{"event_name":"record","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 4, first: "_s:number" },
    Case { file: "messy/duckdb_json-edge-cases/inconsistent_schemas.ndjson", source: r#"{"format":"records","records":{"event_name":"record","default_time":1700000000}}"#, read: 5, rows: 5, dead: 0, columns: 6, first: "id:string,id_number:number,name:string" },
    Case { file: "messy/duckdb_json-edge-cases/top_level_map.jsonl", source: r#"{"format":"records","records":{"event_name":"record","default_time":1700000000}}"#, read: 100, rows: 100, dead: 0, columns: 103, first: "1:number,2:number,3:number,4:number,5:number,6:number,7:number,8:number,9:number,10:number,11:number" },
    Case { file: "messy/duckdb_json-edge-cases/union.ndjson", source: r#"{"format":"records","records":{"event_name":"record","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 4, first: "data:string" },
    Case { file: "messy/jitsucom_bulker_test_data/arrays.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 5, rows: 3, dead: 2, columns: 7, first: "id:number,array1:string,array2:string,array3:string" },
    Case { file: "messy/jitsucom_bulker_test_data/columns_added.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 6, rows: 6, dead: 0, columns: 8, first: "id:number,name:string,column1:string,column2:string,column3:string" },
    Case { file: "messy/jitsucom_bulker_test_data/columns_added2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 7, first: "id:number,name:string,column4:string,column5:string" },
    Case { file: "messy/jitsucom_bulker_test_data/columns_added_partial.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/columns_added_partial2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 7, first: "id:number,name:string,column6:string,column7:string" },
    Case { file: "messy/jitsucom_bulker_test_data/data_types.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 8, first: "id:number,float_type:number,time_type:string,bool_type:boolean,string_type:string" },
    Case { file: "messy/jitsucom_bulker_test_data/date_mix.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 6, first: "id:number,name:string,dt:string" },
    Case { file: "messy/jitsucom_bulker_test_data/date_type.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 6, first: "id:number,name:string,dt:string" },
    Case { file: "messy/jitsucom_bulker_test_data/emoji.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/empty.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 0, rows: 0, dead: 0, columns: 0, first: "" },
    Case { file: "messy/jitsucom_bulker_test_data/existing_table1.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 5, first: "id:number,id_string:string" },
    Case { file: "messy/jitsucom_bulker_test_data/existing_table2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 5, first: "id:number,data:string" },
    Case { file: "messy/jitsucom_bulker_test_data/existing_table_num.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 5, first: "id:number,data:number" },
    Case { file: "messy/jitsucom_bulker_test_data/existing_table_text.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 4, first: "id:string" },
    Case { file: "messy/jitsucom_bulker_test_data/identifiers.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 24, first: "id:number,name:string,__:number,___:number,__________:number,universit__fran_ais:number,____________:number,test_name__drop_database_public__select_1_from_dual_:number,test_name:number,1test_name:number,2:number" },
    Case { file: "messy/jitsucom_bulker_test_data/merge_window1.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 10, rows: 10, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/merge_window2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 10, rows: 10, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/merge_window3.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 4, rows: 4, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/merge_window4.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/multiline.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/nested.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 5, first: "id:number,nested:string" },
    Case { file: "messy/jitsucom_bulker_test_data/non_utc_timestamp.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 4, first: "id:number" },
    Case { file: "messy/jitsucom_bulker_test_data/partition1.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 5, rows: 5, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/partition1_1.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 5, rows: 5, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/partition2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 10, rows: 10, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/repeated_ids.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 8, rows: 8, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/repeated_ids2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 4, rows: 4, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/repeated_ids_discr.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 9, rows: 9, dead: 0, columns: 7, first: "id:number,name:string,int1:number,float1:number" },
    Case { file: "messy/jitsucom_bulker_test_data/repeated_ids_multi.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 9, rows: 9, dead: 0, columns: 6, first: "id:number,id2:string,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/repeated_ids_multi2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 5, rows: 5, dead: 0, columns: 6, first: "id:number,id2:string,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/replace_table.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 10, rows: 10, dead: 0, columns: 6, first: "id:number,name:string,name2:string" },
    Case { file: "messy/jitsucom_bulker_test_data/schema_option.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 4, first: "id:number" },
    Case { file: "messy/jitsucom_bulker_test_data/simple.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 6, first: "id:number,name:string,extra:string" },
    Case { file: "messy/jitsucom_bulker_test_data/simple2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 9, rows: 9, dead: 0, columns: 5, first: "id:number,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/type_hints.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 14, first: "id:number,time1:string,name:string,int1:string,__sql_type_int1:string,__sql_type_nested_json2:string,__sql_type_nested_json3_nested_json_nested:string,nested_json1:string,nested_json2:string,nested_json3:string,nested_json4:string" },
    Case { file: "messy/jitsucom_bulker_test_data/type_hints_bq.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 14, first: "id:number,time1:string,name:string,int1:string,__sql_type_int1:string,__sql_type_nested_json2:string,__sql_type_nested_json3_nested_json_nested:string,nested_json1:string,nested_json2:string,nested_json3:string,nested_json4:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 20, first: "id:number,time1:string,time2:string,date1:string,int_1:number,roundfloat:number,float1:number,intstring:string,roundfloatstring:string,floatstring:string,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 17, first: "id:number,time1:string,time2:string,date1:string,int_1:number,roundfloat:number,float1:number,intstring:string,roundfloatstring:string,floatstring:string,name:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_coalesce.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 8, rows: 8, dead: 0, columns: 14, first: "id:number,str_1:number,float_1:number,int_1:number,bool_1:boolean,str_2:string,str_1_string:string,float_1_boolean:boolean,bool_1_number:number,int_1_boolean:boolean,bool_1_string:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_collision.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 17, first: "id:number,time1:string,time2:string,time3:string,int_1:number,roundfloat:number,float1:number,intstring:string,roundfloatstring:string,floatstring:string,string1:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_collision2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 6, first: "id:number,time1:string,string2:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_json.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 3, rows: 3, dead: 0, columns: 8, first: "id:number,name:string,json1:string,json2:string,array1:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_json_noarr_part1.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 6, first: "id:number,name:string,json1:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_json_noarr_part2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 6, first: "id:number,name:string,json1:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_json_part1.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 7, first: "id:number,name:string,json1:string,array1:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_json_part2.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 2, rows: 2, dead: 0, columns: 7, first: "id:number,name:string,json1:string,array1:string" },
    Case { file: "messy/jitsucom_bulker_test_data/types_json_part3.ndjson", source: r#"{"format":"records","records":{"event_name":"record","time_field":"_timestamp","default_time":1700000000}}"#, read: 1, rows: 1, dead: 0, columns: 7, first: "id:number,name:string,json1:string,array1:string" },
    Case { file: "messy/simdjson-data/gsoc-2018.json", source: r#"{"format":"records","records":{"records_at":".","event_name":"project","default_time":1700000000},"document":true}"#, read: 1, rows: 1264, dead: 0, columns: 9, first: "_context:string,_type:string,name:string,description:string,sponsor:string,author:string" },
    Case { file: "messy/simdjson-data/citm_catalog.json", source: r#"{"format":"records","records":{"records_at":"events","event_name":"event","default_time":1700000000},"document":true}"#, read: 1, rows: 184, dead: 0, columns: 8, first: "id:number,name:string,subtopicids:string,topicids:string,logo:string" },
    Case { file: "nested/simdjson-data/twitter.json", source: r#"{"format":"records","records":{"records_at":"statuses","event_name":"tweet","time_field":"created_at","distinct_id_field":"user.id_str"},"document":true}"#, read: 1, rows: 100, dead: 0, columns: 23, first: "metadata:string,id:number,id_str:string,text:string,source:string,truncated:boolean,in_reply_to_user_id:number,in_reply_to_user_id_str:string,in_reply_to_screen_name:string,res_user:string,retweet_count:number" },
    Case { file: "nested/simdjson-data/twitterescaped.json", source: r#"{"format":"records","records":{"records_at":"statuses","event_name":"tweet","time_field":"created_at","distinct_id_field":"user.id_str"},"document":true}"#, read: 1, rows: 100, dead: 0, columns: 23, first: "metadata:string,id:number,id_str:string,text:string,source:string,truncated:boolean,in_reply_to_user_id:number,in_reply_to_user_id_str:string,in_reply_to_screen_name:string,res_user:string,retweet_count:number" },
    Case { file: "nested/simdjson-data/github_events.json", source: r#"{"format":"records","records":{"event_field":"type","time_field":"created_at","distinct_id_field":"actor.login"},"document":true}"#, read: 1, rows: 30, dead: 0, columns: 9, first: "actor:string,repo:string,public:boolean,payload:string,id:string,org:string" },
    Case { file: "nested/duckdb/bluesky.json.gz", source: r#"{"format":"records","records":{"event_field":"kind","time_field":"time_us","distinct_id_field":"did"}}"#, read: 10, rows: 10, dead: 0, columns: 4, first: "commit:string" },
    Case { file: "nested/duckdb/internal_2732.json", source: r#"{"format":"records","records":{"event_name":"tweet","time_field":"data.created_at","distinct_id_field":"data.author_id","properties_field":"data"}}"#, read: 1, rows: 1, dead: 0, columns: 17, first: "attachments:string,context_annotations:string,conversation_id:string,edit_controls:string,edit_history_tweet_ids:string,entities:string,geo:string,id:string,lang:string,possibly_sensitive:boolean,public_metrics:string" },
    Case { file: "volume/druid-wikiticker/wikiticker-2015-09-12-sampled.json.gz", source: r#"{"format":"records","records":{"event_name":"edit","time_field":"time","distinct_id_field":"user"}}"#, read: 39244, rows: 39244, dead: 0, columns: 21, first: "channel:string,comment:string,isanonymous:boolean,isminor:boolean,isnew:boolean,isrobot:boolean,isunpatrolled:boolean,namespace:string,page:string,res_delta:number,added:number" },
];

fn data_dir() -> Option<PathBuf> {
    let d = repo().join("../shared/data");
    d.is_dir().then_some(d)
}

fn run_case(data: &Path, c: &Case, work: &Path) -> Result<(), String> {
    let mut source: serde_json::Value = serde_json::from_str(c.source).unwrap();
    source["type"] = "file".into();
    source["path"] = data.join(c.file).display().to_string().into();
    let topology = serde_json::json!({
        "sources": {"in": source},
        "operators": {
            "clean": {"type": "clean-name", "inputs": ["in"]},
            "nested": {"type": "stringify-nested", "inputs": ["clean"]},
            "types": {"type": "type-infer", "inputs": ["nested"]},
            "dates": {"type": "partition-by-date", "inputs": ["types"], "timezone": "UTC"},
        },
        "sinks": {"lake": {
            "type": "lake", "inputs": ["dates"], "project_id": 1,
            "store": {"type": "local", "path": work.join("lake")},
            "catalog": {"type": "local", "path": work.join("c.sqlite"), "database": "d"},
        }},
    });
    let t = work.join("t.yaml");
    // JSON is YAML.
    std::fs::write(&t, topology.to_string()).unwrap();
    let out = sluice()
        .args(["run", &t.display().to_string(), "--no-progress"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!(
            "run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = stdout(&out);
    let number = |label: &str| -> u64 {
        text.split(label)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX)
    };
    let (read, dead) = (number("events read"), number("dead letters"));
    let rows = if c.rows == 0 {
        0
    } else {
        let csv = stdout(&run_ok(sluice().args([
            "query",
            &t.display().to_string(),
            "SELECT count(*) FROM mp_master_event",
            "--format",
            "csv",
        ])));
        csv.lines().nth(1).unwrap().parse().unwrap()
    };
    let dead_files = dead_letters(&work.join("lake")).len() as u64;
    let mut problems = Vec::new();
    if (read, rows, dead) != (c.read, c.rows, c.dead) {
        problems.push(format!(
            "read/rows/dead {read}/{rows}/{dead}, expected {}/{}/{}",
            c.read, c.rows, c.dead
        ));
    }
    if dead_files != dead {
        problems.push(format!("{dead_files} dead letters on disk, {dead} counted"));
    }
    // Nothing lost: every line, or every record of a document, is a row or a dead letter.
    let records = count_records(&data.join(c.file), &source);
    if rows + dead != records {
        problems.push(format!(
            "{rows} rows + {dead} dead letters != {records} records in the file"
        ));
    }
    let cols = catalog_columns(&work.join("c.sqlite"));
    if cols.len() != c.columns {
        problems.push(format!("{} columns, expected {}", cols.len(), c.columns));
    }
    let first: Vec<String> = cols
        .iter()
        .skip(3)
        .take(11)
        .map(|(n, k)| format!("{n}:{k}"))
        .collect();
    if first.join(",") != c.first {
        problems.push(format!("columns {}, expected {}", first.join(","), c.first));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn catalog_columns(db: &Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c
        .prepare("SELECT c.name, c.class FROM columns c JOIN tables t ON t.id = c.table_id ORDER BY t.id, c.ordinal")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Records in the file, counted independently: lines, or the elements of a document's array.
fn count_records(path: &Path, source: &serde_json::Value) -> u64 {
    let lines = read_lines_lossy(path);
    if source["document"] == true {
        let doc: serde_json::Value = serde_json::from_str(&lines.join("\n")).unwrap();
        let at = source["records"]["records_at"].as_str();
        let node = match at {
            None => &doc,
            Some(".") => &doc,
            Some(p) => p.split('.').fold(&doc, |v, k| &v[k]),
        };
        return match node {
            serde_json::Value::Array(a) => a.len() as u64,
            serde_json::Value::Object(o) if at.is_some() => o.len() as u64,
            _ => 1,
        };
    }
    let mut n = 0;
    for l in &lines {
        match serde_json::from_str::<serde_json::Value>(l) {
            Ok(serde_json::Value::Array(a)) if source["format"] == "records" => n += a.len() as u64,
            Ok(v) if source["records"]["records_at"].is_string() => {
                n += v[source["records"]["records_at"].as_str().unwrap()]
                    .as_array()
                    .map(|a| a.len())
                    .unwrap_or(1) as u64
            }
            _ => n += 1,
        }
    }
    n
}

fn read_lines_lossy(path: &Path) -> Vec<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap();
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(f)
            .read_to_end(&mut bytes)
            .unwrap();
    } else {
        std::io::BufReader::new(f).read_to_end(&mut bytes).unwrap();
    }
    let text = String::from_utf8_lossy(&bytes);
    text.split_terminator('\n').map(str::to_string).collect()
}

#[test]
fn every_shared_data_file_runs_through_with_the_expected_rows_and_columns() {
    let Some(data) = data_dir() else {
        assert!(
            std::env::var("SLUICE_REQUIRE_SHARED").as_deref() != Ok("1"),
            "../shared/data is absent and SLUICE_REQUIRE_SHARED=1: put the shared folder beside \
             the project's root"
        );
        eprintln!("../shared/data is absent: skipping the third-party data files");
        return;
    };
    let mut failures = Vec::new();
    for c in CASES {
        let work = tempfile::tempdir().unwrap();
        if let Err(e) = run_case(&data, c, work.path()) {
            failures.push(format!("{}: {e}", c.file));
        }
    }
    // Every data file in the folder has a case.
    let mut files = Vec::new();
    collect(&data, &data, &mut files);
    for f in files {
        if !CASES.iter().any(|c| c.file == f) {
            failures.push(format!("{f}: no case in this test"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.file_name().is_some_and(|n| n != "SOURCES.md") {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}
