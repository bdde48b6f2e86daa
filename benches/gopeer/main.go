// W2's Go peer: a Kafka -> Parquet-on-S3 consumer built on the three libraries that Redpanda
// Connect's `kafka_franz` input, `parquet_encode` processor and `aws_s3` output are built on
// (franz-go, parquet-go, aws-sdk-go-v2), doing what that pipeline does:
//
//	gopeer --brokers B --topic T --group G --endpoint URL --bucket B --schema FILE \
//	    [--until-end] [--batch-rows 50000] [--flush-seconds 10]
//
// A consumer in group G (from the earliest offset, no auto-commit) gathers messages into a batch
// (count or period, like an output's batching policy). The batch's messages are parsed as JSON
// in parallel (one goroutine per CPU, like a pipeline's processor threads), mapped to rows of the
// schema declared in FILE (parquet_encode takes a declared schema: it infers none), cut per
// mp_date, each date encoded as one Snappy Parquet object and put to S3 with SSE AES256 (up to
// 64 puts in flight, aws_s3's default); then the offsets are committed. At least once: a crash
// between the puts and the commit duplicates rows.
//
// FILE is a JSON list of {"name": column, "type": UTF8 | DOUBLE | BOOLEAN | INT64 | TIMESTAMP}.
// The mapping (what a user writes in Bloblang before parquet_encode): `event` -> mp_event_name,
// each property -> a column by a naive SQL-friendly name (`$x` -> `mp_x`, lower case, other
// characters -> `_`: not Mixpanel's rules), `time` (seconds or milliseconds) -> TIMESTAMP(MICROS),
// numbers -> DOUBLE, objects and arrays -> their JSON text in a UTF8 column, mp_date from `time`
// in UTC. Properties the schema does not declare are dropped, as parquet_encode drops them.
//
// What it does not do (the input must be `sluice gen --clean`): Mixpanel's name cleaning, type
// conflicts, dead letters, the Glue table and partitions (Redpanda Connect has no Glue output),
// exactly-once commits.
//
// With --until-end it stops once every partition reaches the end offset it had at start; without,
// it runs until SIGTERM/SIGINT, then flushes and commits. Prints one JSON summary on stdout.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type options struct {
	brokers, topic, group, endpoint, bucket, prefix, table, schema string
	batchRows                                                      int
	flushSeconds                                                   float64
	untilEnd                                                       bool
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "Kafka bootstrap servers (comma-separated)")
	flag.StringVar(&o.topic, "topic", "", "topic to consume")
	flag.StringVar(&o.group, "group", "", "consumer group")
	flag.StringVar(&o.endpoint, "endpoint", "", "S3 endpoint URL (default: AWS)")
	flag.StringVar(&o.bucket, "bucket", "", "S3 bucket")
	flag.StringVar(&o.prefix, "prefix", "peer", "key prefix")
	flag.StringVar(&o.table, "table", "mp_master_event", "table folder under the prefix")
	flag.StringVar(&o.schema, "schema", "", "JSON file: the declared columns [{name, type}]")
	flag.IntVar(&o.batchRows, "batch-rows", 50_000, "messages per batch")
	flag.Float64Var(&o.flushSeconds, "flush-seconds", 10, "a batch is written at the latest this long after its first message")
	flag.BoolVar(&o.untilEnd, "until-end", false, "stop at the end offsets the partitions had at start")
	flag.Parse()
	for name, v := range map[string]string{"--brokers": o.brokers, "--topic": o.topic, "--group": o.group, "--bucket": o.bucket, "--schema": o.schema} {
		if v == "" {
			fmt.Fprintf(os.Stderr, "gopeer: %s is required (see --help)\n", name)
			os.Exit(2)
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "gopeer: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	cols, err := loadSchema(o.schema)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(o.brokers, ",")...),
		kgo.ConsumerGroup(o.group),
		kgo.ConsumeTopics(o.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()

	ends := map[int32]int64{}
	if o.untilEnd {
		adm := kadm.NewClient(cl)
		lo, err := adm.ListStartOffsets(context.Background(), o.topic)
		if err == nil {
			err = lo.Error()
		}
		if err != nil {
			return fmt.Errorf("listing start offsets of %s: %w", o.topic, err)
		}
		hi, err := adm.ListEndOffsets(context.Background(), o.topic)
		if err == nil {
			err = hi.Error()
		}
		if err != nil {
			return fmt.Errorf("listing end offsets of %s: %w", o.topic, err)
		}
		hi.Each(func(h kadm.ListedOffset) {
			if l, ok := lo.Lookup(h.Topic, h.Partition); ok && h.Offset > l.Offset {
				ends[h.Partition] = h.Offset
			}
		})
	}

	lake, err := newLake(o, cols)
	if err != nil {
		return err
	}
	pos := map[int32]int64{}
	caughtUp := func() bool {
		for p, hi := range ends {
			if pos[p] < hi {
				return false
			}
		}
		return true
	}
	var (
		buf      [][]byte
		oldest   time.Time
		messages int
	)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if err := lake.write(buf); err != nil {
			return err
		}
		if err := cl.CommitUncommittedOffsets(context.Background()); err != nil {
			return fmt.Errorf("committing offsets: %w", err)
		}
		buf = buf[:0]
		return nil
	}
	for ctx.Err() == nil && !(o.untilEnd && caughtUp()) {
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := cl.PollRecords(pctx, 5000)
		pcancel()
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("fetching: %w", ferr)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if len(buf) == 0 {
				oldest = time.Now()
			}
			buf = append(buf, r.Value)
			pos[r.Partition] = r.Offset + 1
			messages++
		})
		if len(buf) >= o.batchRows || (len(buf) > 0 && time.Since(oldest).Seconds() >= o.flushSeconds) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]int{
		"messages": messages, "rows": lake.rows, "files": lake.files,
		"partitions": len(lake.partitions), "dropped_properties": lake.dropped, "bad": lake.bad,
	})
}

func loadSchema(path string) ([]column, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the schema: %w", err)
	}
	var cols []column
	if err := json.Unmarshal(b, &cols); err != nil {
		return nil, fmt.Errorf("%s: not a JSON list of {name, type}: %w", path, err)
	}
	for _, c := range cols {
		if _, err := leaf(c.Type); err != nil {
			return nil, fmt.Errorf("%s: column %q: %w", path, c.Name, err)
		}
	}
	return cols, nil
}

func leaf(t string) (parquet.Node, error) {
	switch t {
	case "UTF8":
		// parquet_encode's default encoding for byte arrays.
		return parquet.Encoded(parquet.String(), &parquet.DeltaLengthByteArray), nil
	case "DOUBLE":
		return parquet.Leaf(parquet.DoubleType), nil
	case "BOOLEAN":
		return parquet.Leaf(parquet.BooleanType), nil
	case "INT64":
		return parquet.Int(64), nil
	case "TIMESTAMP":
		return parquet.Timestamp(parquet.Microsecond), nil
	}
	return nil, fmt.Errorf("unknown type %q: UTF8, DOUBLE, BOOLEAN, INT64 or TIMESTAMP", t)
}

type lake struct {
	o          options
	s3         *s3.Client
	schema     *parquet.Schema
	types      map[string]string // column -> declared type
	names      sync.Map          // property name -> column name
	rows       int
	files      int
	dropped    int
	bad        int
	partitions map[string]bool
}

func newLake(o options, cols []column) (*lake, error) {
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"))
	if err != nil {
		return nil, fmt.Errorf("AWS config: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.endpoint != "" {
			so.BaseEndpoint = aws.String(o.endpoint)
			so.UsePathStyle = true
		}
	})
	group := parquet.Group{}
	types := map[string]string{}
	for _, c := range cols {
		n, _ := leaf(c.Type) // checked by loadSchema
		group[c.Name] = parquet.Optional(n)
		types[c.Name] = c.Type
	}
	return &lake{o: o, s3: client, schema: parquet.NewSchema(o.table, group), types: types,
		partitions: map[string]bool{}}, nil
}

func (l *lake) column(prop string) string {
	if c, ok := l.names.Load(prop); ok {
		return c.(string)
	}
	n := prop
	if strings.HasPrefix(n, "$") {
		n = "mp_" + n[1:]
	}
	var b strings.Builder
	for _, r := range strings.ToLower(n) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	l.names.Store(prop, b.String())
	return b.String()
}

type parsed struct {
	row     map[string]any
	date    string
	dropped int
	bad     bool
}

// toRow maps one message to a row of the declared schema.
func (l *lake) toRow(value []byte) parsed {
	var e struct {
		Event      any            `json:"event"`
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(value, &e); err != nil {
		return parsed{bad: true}
	}
	t, ok := e.Properties["time"].(float64)
	if !ok || math.IsNaN(t) || math.IsInf(t, 0) || t < 0 {
		return parsed{bad: true}
	}
	if t > 1e11 {
		t /= 1000
	}
	event, ok := e.Event.(string)
	if !ok || event == "" {
		return parsed{bad: true}
	}
	micros := int64(t * 1e6)
	row := make(map[string]any, len(e.Properties)+1)
	out := parsed{row: row, date: time.UnixMicro(micros).UTC().Format("2006-01-02")}
	row["mp_event_name"] = event
	for k, v := range e.Properties {
		if v == nil {
			continue
		}
		name := l.column(k) // `time` and `distinct_id` keep their names
		ty, ok := l.types[name]
		if !ok {
			out.dropped++
			continue
		}
		switch ty {
		case "TIMESTAMP":
			row[name] = micros
		case "UTF8":
			if s, ok := v.(string); ok {
				row[name] = s
			} else {
				// Objects and arrays as JSON text; numbers (distinct_id's) as JSON writes them.
				j, _ := json.Marshal(v) // a value json.Unmarshal made marshals back
				row[name] = string(j)
			}
		case "DOUBLE":
			f, ok := v.(float64)
			if !ok {
				out.dropped++
				continue
			}
			row[name] = f
		case "INT64":
			f, ok := v.(float64)
			if !ok || f != math.Trunc(f) {
				out.dropped++
				continue
			}
			row[name] = int64(f)
		case "BOOLEAN":
			b, ok := v.(bool)
			if !ok {
				out.dropped++
				continue
			}
			row[name] = b
		}
	}
	return out
}

// write maps, encodes and puts one batch.
func (l *lake) write(values [][]byte) error {
	out := make([]parsed, len(values))
	workers := runtime.GOMAXPROCS(0)
	chunk := (len(values) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < len(values); lo += chunk {
		hi := min(lo+chunk, len(values))
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				out[i] = l.toRow(values[i])
			}
		}(lo, hi)
	}
	wg.Wait()
	byDate := map[string][]map[string]any{}
	for _, p := range out {
		if p.bad {
			l.bad++
			continue
		}
		l.dropped += p.dropped
		byDate[p.date] = append(byDate[p.date], p.row)
	}
	dates := make([]string, 0, len(byDate))
	for d := range byDate {
		dates = append(dates, d)
	}
	sort.Strings(dates)

	sem := make(chan struct{}, 64)
	errs := make([]error, len(dates))
	for i, d := range dates {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, d string, rows []map[string]any) {
			defer func() { <-sem; wg.Done() }()
			errs[i] = l.put(d, rows)
		}(i, d, byDate[d])
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, d := range dates {
		l.rows += len(byDate[d])
		l.files++
		l.partitions[d] = true
	}
	return nil
}

func (l *lake) put(date string, rows []map[string]any) error {
	var b bytes.Buffer
	w := parquet.NewGenericWriter[map[string]any](&b, l.schema, parquet.Compression(&parquet.Snappy))
	if _, err := w.Write(rows); err != nil {
		return fmt.Errorf("encoding %s: %w", date, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encoding %s: %w", date, err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	key := fmt.Sprintf("%s/%s/mp_date=%s/part-%s.parquet", l.o.prefix, l.o.table, date, hex.EncodeToString(id))
	_, err := l.s3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(l.o.bucket), Key: aws.String(key), Body: bytes.NewReader(b.Bytes()),
		ServerSideEncryption: s3types.ServerSideEncryptionAes256,
	})
	if err != nil {
		return fmt.Errorf("putting s3://%s/%s: %w", l.o.bucket, key, err)
	}
	return nil
}
