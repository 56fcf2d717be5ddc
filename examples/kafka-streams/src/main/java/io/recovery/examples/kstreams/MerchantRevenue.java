package io.recovery.examples.kstreams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.WindowStore;

/**
 * Per merchant: revenue and order count over 5-minute tumbling windows, and the average order amount over
 * 15-minute windows hopping by 5 minutes, both with a grace period and emitted once, when the window closes
 * ({@code suppress(untilWindowCloses)}).
 *
 * <p>Input (key: merchant): {"order_id", "merchant", "seq", "created_at" (ISO-8601), "amount"}. Output (key:
 * merchant), one record per window: {"merchant", "window_start", "window_end" (ISO-8601), "revenue", "orders"}
 * for the tumbling windows and {"merchant", "window_start", "window_end", "avg_amount"} for the hopping ones.
 *
 * <p>{@code --revenue-in-cents} is the bad deploy of the example: amounts are read as cents (x100).
 */
public final class MerchantRevenue {
  static final ObjectMapper JSON = new ObjectMapper();

  private MerchantRevenue() {}

  /** Event time from the order's created_at, not the record's timestamp. */
  public static final class CreatedAt implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      try {
        JsonNode order = JSON.readTree((String) record.value());
        return Instant.parse(order.get("created_at").asText()).toEpochMilli();
      } catch (Exception e) {
        return -1; // a negative timestamp: Kafka Streams skips the record and counts it
      }
    }
  }

  /** Count and sum of amounts, serialized as 16 bytes. */
  record Stats(long count, double sum) {
    static final Stats EMPTY = new Stats(0, 0.0);

    Stats add(double amount) {
      return new Stats(count + 1, sum + amount);
    }
  }

  static final Serde<Stats> STATS =
      Serdes.serdeFrom(
          (Serializer<Stats>)
              (topic, s) -> ByteBuffer.allocate(16).putLong(s.count()).putDouble(s.sum()).array(),
          (Deserializer<Stats>)
              (topic, b) -> {
                ByteBuffer buf = ByteBuffer.wrap(b);
                return new Stats(buf.getLong(), buf.getDouble());
              });

  static double amount(String value, double factor) {
    try {
      return JSON.readTree(value).get("amount").asDouble() * factor;
    } catch (Exception e) {
      throw new IllegalArgumentException("unreadable order: " + value, e);
    }
  }

  static String result(Windowed<String> window, Map<String, Object> fields) {
    ObjectNode doc = JSON.createObjectNode();
    doc.put("merchant", window.key());
    doc.put("window_start", Instant.ofEpochMilli(window.window().start()).toString());
    doc.put("window_end", Instant.ofEpochMilli(window.window().end()).toString());
    fields.forEach((name, value) -> doc.putPOJO(name, value));
    return doc.toString();
  }

  /** The topology: two windowed aggregations of the same grouped stream, both suppressed until close. */
  public static Topology topology(String input, String output, Duration grace, double factor) {
    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, String> orders =
        builder.stream(
            input,
            Consumed.with(Serdes.String(), Serdes.String()).withTimestampExtractor(new CreatedAt()));
    KGroupedStream<String, String> byMerchant =
        orders.groupByKey(Grouped.with(Serdes.String(), Serdes.String()));

    byMerchant
        .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(5), grace))
        .aggregate(
            () -> Stats.EMPTY,
            (merchant, order, stats) -> stats.add(amount(order, factor)),
            Materialized.<String, Stats, WindowStore<Bytes, byte[]>>as("revenue-5m")
                .withKeySerde(Serdes.String())
                .withValueSerde(STATS))
        .suppress(
            Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()).withName("revenue-5m-final"))
        .toStream()
        .map(
            (window, stats) -> {
              Map<String, Object> fields = new HashMap<>();
              fields.put("revenue", stats.sum());
              fields.put("orders", stats.count());
              return KeyValue.pair(window.key(), result(window, fields));
            })
        .to(output, Produced.with(Serdes.String(), Serdes.String()));

    byMerchant
        .windowedBy(
            TimeWindows.ofSizeAndGrace(Duration.ofMinutes(15), grace).advanceBy(Duration.ofMinutes(5)))
        .aggregate(
            () -> Stats.EMPTY,
            (merchant, order, stats) -> stats.add(amount(order, factor)),
            Materialized.<String, Stats, WindowStore<Bytes, byte[]>>as("avg-amount-15m")
                .withKeySerde(Serdes.String())
                .withValueSerde(STATS))
        .suppress(
            Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded())
                .withName("avg-amount-15m-final"))
        .toStream()
        .map(
            (window, stats) ->
                KeyValue.pair(
                    window.key(),
                    result(window, Map.of("avg_amount", stats.sum() / stats.count()))))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
  }

  static Map<String, String> parse(String[] args) {
    Map<String, String> opts = new HashMap<>();
    opts.put("--bootstrap", System.getenv().getOrDefault("KAFKA_BOOTSTRAP_SERVERS", ""));
    opts.put("--input", "orders");
    opts.put("--output", "merchant-revenue");
    opts.put("--application-id", "merchant-revenue");
    opts.put("--state-dir", System.getProperty("java.io.tmpdir") + "/merchant-revenue");
    opts.put("--grace-ms", "60000");
    opts.put("--commit-interval-ms", "30000"); // Kafka Streams' default under at-least-once
    opts.put("--revenue-in-cents", "false");
    for (int i = 0; i < args.length; i++) {
      String name = args[i];
      if (name.equals("--revenue-in-cents")) {
        opts.put(name, "true");
      } else if (opts.containsKey(name) && i + 1 < args.length) {
        opts.put(name, args[++i]);
      } else {
        throw new IllegalArgumentException(
            "unknown or incomplete argument " + name + "; known: " + opts.keySet());
      }
    }
    if (opts.get("--bootstrap").isEmpty()) {
      throw new IllegalArgumentException("pass --bootstrap host:port or set KAFKA_BOOTSTRAP_SERVERS");
    }
    return opts;
  }

  public static void main(String[] args) throws InterruptedException {
    Map<String, String> opts;
    try {
      opts = parse(args);
    } catch (IllegalArgumentException e) {
      System.err.println("merchant-revenue: " + e.getMessage());
      System.exit(2);
      return;
    }
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, opts.get("--application-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, opts.get("--bootstrap"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, opts.get("--state-dir"));
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, opts.get("--commit-interval-ms"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
    // no record cache: a window's final result leaves as soon as stream time closes it, not at the next commit
    props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    // a killed instance is noticed after 6 s (the broker's minimum) instead of 45 s
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 2000);
    double factor = Boolean.parseBoolean(opts.get("--revenue-in-cents")) ? 100.0 : 1.0;
    Topology topology =
        topology(
            opts.get("--input"),
            opts.get("--output"),
            Duration.ofMillis(Long.parseLong(opts.get("--grace-ms"))),
            factor);

    KafkaStreams streams = new KafkaStreams(topology, props);
    CountDownLatch done = new CountDownLatch(1);
    streams.setStateListener(
        (now, before) -> {
          if (now == KafkaStreams.State.RUNNING) {
            System.out.println("merchant-revenue: RUNNING");
            System.out.flush();
          }
          if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
            done.countDown();
          }
        });
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  // leave the group: the next deployment need not wait for this member's session to expire
                  streams.close(
                      CloseOptions.groupMembershipOperation(
                              CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                          .withTimeout(Duration.ofSeconds(30)));
                  done.countDown();
                }));
    streams.start();
    done.await();
    System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
  }
}
