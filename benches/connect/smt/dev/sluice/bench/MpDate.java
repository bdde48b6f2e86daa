package dev.sluice.bench;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.HashMap;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.transforms.Transformation;

/**
 * The one piece of custom code in the Kafka Connect peer: adds a top-level {@code mp_date}
 * (yyyy-MM-dd, UTC) to a schemaless Mixpanel record from {@code properties.time}, read as epoch
 * milliseconds above 1e11 and as epoch seconds otherwise (the generator emits both). No stock
 * SMT can do that choice; the Iceberg sink then partitions by identity(mp_date).
 */
public class MpDate<R extends ConnectRecord<R>> implements Transformation<R> {
  private static final DateTimeFormatter DAY =
      DateTimeFormatter.ofPattern("yyyy-MM-dd").withZone(ZoneOffset.UTC);

  @Override
  @SuppressWarnings("unchecked")
  public R apply(R record) {
    if (!(record.value() instanceof Map)) {
      return record;
    }
    Map<String, Object> value = new HashMap<>((Map<String, Object>) record.value());
    String day = null;
    Object props = value.get("properties");
    if (props instanceof Map) {
      Object t = ((Map<String, Object>) props).get("time");
      if (t instanceof Number) {
        double v = ((Number) t).doubleValue();
        long millis = v > 1e11 ? (long) v : (long) (v * 1000.0);
        day = DAY.format(Instant.ofEpochMilli(millis));
      }
    }
    value.put("mp_date", day);
    return record.newRecord(record.topic(), record.kafkaPartition(), record.keySchema(),
        record.key(), null, value, record.timestamp());
  }

  @Override
  public ConfigDef config() {
    return new ConfigDef();
  }

  @Override
  public void configure(Map<String, ?> configs) {}

  @Override
  public void close() {}
}
