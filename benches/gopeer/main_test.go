package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

func testLake(t *testing.T) *lake {
	t.Helper()
	cols := []column{
		{"mp_event_name", "UTF8"}, {"time", "TIMESTAMP"}, {"distinct_id", "UTF8"},
		{"mp_insert_id", "UTF8"}, {"plan_type", "UTF8"}, {"seats", "DOUBLE"},
		{"cart", "UTF8"}, {"autoplay", "BOOLEAN"},
	}
	l, err := newLake(options{table: "t"}, cols)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRowsFollowTheDeclaredSchema(t *testing.T) {
	l := testLake(t)
	p := l.toRow([]byte(`{"event":"Buy","properties":{"time":1700000000123,"distinct_id":42,
		"$insert_id":"a1","Plan Type":"annual","seats":3,"cart":{"items":[1,2]},"autoplay":true,
		"undeclared":"x","$region":null}}`))
	if p.bad {
		t.Fatal("a valid event was marked bad")
	}
	want := map[string]any{
		"mp_event_name": "Buy", "time": int64(1700000000123000), "distinct_id": "42",
		"mp_insert_id": "a1", "plan_type": "annual", "seats": 3.0, "cart": `{"items":[1,2]}`,
		"autoplay": true,
	}
	if len(p.row) != len(want) {
		t.Fatalf("row %v, want %v", p.row, want)
	}
	for k, v := range want {
		if p.row[k] != v {
			t.Errorf("%s: %#v, want %#v", k, p.row[k], v)
		}
	}
	if p.dropped != 1 {
		t.Errorf("dropped %d, want 1 (the undeclared property)", p.dropped)
	}
	if p.date != "2023-11-14" {
		t.Errorf("date %s", p.date)
	}
}

func TestEventsWithoutANameOrATimeAreBad(t *testing.T) {
	l := testLake(t)
	for _, line := range []string{
		`{"event":"","properties":{"time":1}}`,
		`{"event":3,"properties":{"time":1}}`,
		`{"event":"x","properties":{"time":"1"}}`,
		`{"event":"x","properties":{"time":-1}}`,
		`{"event":"x","properties":{}}`,
		`not json`,
	} {
		if !l.toRow([]byte(line)).bad {
			t.Errorf("%s: not marked bad", line)
		}
	}
}

func TestEncodedObjectsReadBack(t *testing.T) {
	l := testLake(t)
	rows := []map[string]any{
		l.toRow([]byte(`{"event":"A","properties":{"time":1700000000,"$insert_id":"x","seats":1}}`)).row,
		l.toRow([]byte(`{"event":"B","properties":{"time":1700000001,"$insert_id":"y","autoplay":false}}`)).row,
	}
	var b bytes.Buffer
	w := parquet.NewGenericWriter[map[string]any](&b, l.schema, parquet.Compression(&parquet.Snappy))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if f.NumRows() != 2 {
		t.Fatalf("%d rows", f.NumRows())
	}
	got := make([]map[string]any, 2)
	for i := range got {
		got[i] = map[string]any{}
	}
	r := parquet.NewGenericReader[map[string]any](f, f.Schema())
	if n, err := r.Read(got); n != 2 {
		t.Fatalf("read %d rows: %v", n, err)
	}
	if got[0]["mp_insert_id"] != "x" || got[1]["mp_insert_id"] != "y" || got[0]["seats"] != 1.0 {
		t.Errorf("read back %v", got)
	}
	if ts, ok := got[1]["time"].(time.Time); ok {
		if !ts.Equal(time.Unix(1700000001, 0)) {
			t.Errorf("time %v", ts)
		}
	} else if got[1]["time"] != int64(1700000001000000) {
		t.Errorf("time %#v", got[1]["time"])
	}
}
