package dev.skiff.clients;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.KafkaFuture;

/**
 * What the Java client suites share: where the broker is, client timeouts, unique names,
 * self-describing messages and the content check (the same rules as ../verify.py).
 */
final class ClientSupport {
  /** Upper bound for one client operation; a silent broker fails a test within this. */
  static final Duration OP_TIMEOUT = Duration.ofSeconds(30);

  /** Distinguishes this run's topics, groups and values from earlier runs on the same broker. */
  static final String RUN_ID = UUID.randomUUID().toString().replace("-", "").substring(0, 12);

  private ClientSupport() {}

  private static String probeFailure;
  private static boolean probed;

  /** The broker under test, from SKIFF_BOOTSTRAP; fails at once if it never answered. */
  static String bootstrap() {
    String value = System.getenv("SKIFF_BOOTSTRAP");
    if (value == null || value.isBlank()) {
      fail("SKIFF_BOOTSTRAP is not set (e.g. 127.0.0.1:9092)");
    }
    synchronized (ClientSupport.class) {
      if (!probed) {
        probed = true;
        probeFailure = probe(value);
      }
    }
    if (probeFailure != null) {
      fail("no bootstrap broker answers ApiVersions: " + probeFailure);
    }
    return value;
  }

  /**
   * Sends ApiVersions v0 to each bootstrap address until one answers without error; returns
   * null on success or what went wrong. Hand-rolled on purpose: a liveness probe before any
   * client is involved, so a silent broker fails every test at once instead of each test
   * waiting out its own timeouts.
   */
  private static String probe(String bootstrap) {
    List<String> errors = new ArrayList<>();
    for (String address : bootstrap.split(",")) {
      String host = address.trim().substring(0, address.trim().lastIndexOf(':'));
      int port = Integer.parseInt(address.trim().substring(address.trim().lastIndexOf(':') + 1));
      try (Socket socket = new Socket()) {
        socket.connect(new InetSocketAddress(host, port), 10_000);
        socket.setSoTimeout(10_000);
        byte[] clientId = "skiff-probe".getBytes(StandardCharsets.UTF_8);
        int correlationId = 0x5C1FF;
        DataOutputStream out = new DataOutputStream(socket.getOutputStream());
        out.writeInt(2 + 2 + 4 + 2 + clientId.length);
        out.writeShort(18); // ApiVersions
        out.writeShort(0);
        out.writeInt(correlationId);
        out.writeShort(clientId.length);
        out.write(clientId);
        out.flush();
        DataInputStream in = new DataInputStream(socket.getInputStream());
        int size = in.readInt();
        int gotId = in.readInt();
        short errorCode = in.readShort();
        if (size < 6 || gotId != correlationId || errorCode != 0) {
          errors.add(address + ": bad ApiVersions response (size " + size + ", correlation id " + gotId + ", error " + errorCode + ")");
          continue;
        }
        return null;
      } catch (IOException e) {
        errors.add(address + ": " + e);
      }
    }
    return String.join("; ", errors);
  }

  /** Replication factor of the suites' topics (SKIFF_TEST_REPLICATION_FACTOR, default 1). */
  static short replicationFactor() {
    String value = System.getenv("SKIFF_TEST_REPLICATION_FACTOR");
    return value == null || value.isBlank() ? 1 : Short.parseShort(value);
  }

  /** Settings every client gets: the bootstrap address and timeouts below OP_TIMEOUT. */
  static Properties clientConfig() {
    Properties props = new Properties();
    props.put(CommonClientConfigs.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    props.put(CommonClientConfigs.REQUEST_TIMEOUT_MS_CONFIG, "20000");
    props.put(CommonClientConfigs.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    props.put(CommonClientConfigs.SOCKET_CONNECTION_SETUP_TIMEOUT_MS_CONFIG, "10000");
    props.put(CommonClientConfigs.SOCKET_CONNECTION_SETUP_TIMEOUT_MAX_MS_CONFIG, "10000");
    return props;
  }

  static String uniqueName(String test, String kind) {
    return "skiff-java-" + test + "-" + kind + "-" + RUN_ID;
  }

  /** A produced message. */
  record Message(String key, String value) {}

  /** A consumed record. */
  record Consumed(int partition, long offset, String key, String value) {}

  /** {@code count} messages over {@code keys} keys: key k007, value run:k007:000042. */
  static List<Message> messages(int count, int keys) {
    Map<String, Integer> seq = new HashMap<>();
    List<Message> out = new ArrayList<>(count);
    for (int i = 0; i < count; i++) {
      String key = String.format("k%03d", i % keys);
      int n = seq.merge(key, 1, Integer::sum) - 1;
      out.add(new Message(key, String.format("%s:%s:%06d", RUN_ID, key, n)));
    }
    return out;
  }

  /**
   * Fails unless {@code consumed} is exactly {@code expected}: nothing lost, nothing twice,
   * every key in one partition and in produce order. With {@code contiguousFromZero}, each
   * partition must hold offsets 0..n-1.
   */
  static void checkLog(Collection<Consumed> consumed, List<Message> expected, boolean contiguousFromZero) {
    Set<String> positions = new HashSet<>();
    List<String> duplicates = new ArrayList<>();
    for (Consumed c : consumed) {
      if (!positions.add(c.partition() + "/" + c.offset())) {
        duplicates.add(c.partition() + "/" + c.offset());
      }
    }
    assertTrue(duplicates.isEmpty(), duplicates.size() + " records delivered more than once: " + sample(duplicates));

    Map<Message, Integer> want = counts(expected);
    Map<Message, Integer> got = counts(consumed.stream().map(c -> new Message(c.key(), c.value())).toList());
    if (!want.equals(got)) {
      List<Message> missing = want.keySet().stream().filter(m -> !want.get(m).equals(got.get(m))).toList();
      List<Message> extra = got.keySet().stream().filter(m -> !got.get(m).equals(want.get(m))).toList();
      fail("consumed " + consumed.size() + " of " + expected.size() + " records; missing or short "
          + missing.size() + ": " + sample(missing) + "; unexpected or repeated " + extra.size() + ": " + sample(extra));
    }

    Map<String, Set<Integer>> partitionsOfKey = new HashMap<>();
    Map<Integer, List<Consumed>> byPartition = new TreeMap<>();
    for (Consumed c : consumed) {
      assertEquals(c.key(), c.value().split(":")[1], "value stored under the wrong key at " + c.partition() + "/" + c.offset());
      partitionsOfKey.computeIfAbsent(c.key(), k -> new HashSet<>()).add(c.partition());
      byPartition.computeIfAbsent(c.partition(), p -> new ArrayList<>()).add(c);
    }
    partitionsOfKey.forEach((key, parts) -> assertEquals(1, parts.size(), "key " + key + " spread over partitions " + parts));
    byPartition.forEach((partition, records) -> {
      records.sort((a, b) -> Long.compare(a.offset(), b.offset()));
      if (contiguousFromZero) {
        for (int i = 0; i < records.size(); i++) {
          assertEquals(i, records.get(i).offset(), "partition " + partition + ": gap in offsets");
        }
      }
      Map<String, Integer> lastSeq = new HashMap<>();
      for (Consumed c : records) {
        int seq = Integer.parseInt(c.value().substring(c.value().lastIndexOf(':') + 1));
        int last = lastSeq.getOrDefault(c.key(), -1);
        assertTrue(seq > last, "partition " + partition + ": key " + c.key() + " out of order at offset " + c.offset()
            + " (sequence " + seq + " after " + last + ")");
        lastSeq.put(c.key(), seq);
      }
    });
  }

  private static <T> Map<T, Integer> counts(Collection<T> items) {
    Map<T, Integer> out = new HashMap<>();
    items.forEach(i -> out.merge(i, 1, Integer::sum));
    return out;
  }

  private static String sample(List<?> items) {
    String head = items.stream().limit(5).map(String::valueOf).collect(Collectors.joining(", "));
    return items.size() > 5 ? head + " (+" + (items.size() - 5) + " more)" : head;
  }

  /** The future's value within OP_TIMEOUT, or a test failure naming {@code what}. */
  static <T> T await(KafkaFuture<T> future, String what) throws InterruptedException {
    try {
      return future.get(OP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      return fail("timed out after " + OP_TIMEOUT.toSeconds() + "s: " + what);
    } catch (ExecutionException e) {
      return fail(what + " failed: " + e.getCause(), e.getCause());
    }
  }

  /** Polls {@code probe} until it returns true; fails after OP_TIMEOUT. */
  static void waitUntil(String what, Supplier<Boolean> probe) throws InterruptedException {
    long deadline = System.nanoTime() + OP_TIMEOUT.toNanos();
    RuntimeException last = null;
    while (System.nanoTime() < deadline) {
      try {
        if (probe.get()) {
          return;
        }
      } catch (RuntimeException e) {
        last = e;
      }
      Thread.sleep(200);
    }
    fail("timed out after " + OP_TIMEOUT.toSeconds() + "s waiting for " + what + (last == null ? "" : " (last error: " + last + ")"));
  }

  /** Creates the topic and waits until metadata shows a leader for every partition. */
  static void createTopic(Admin admin, String topic, int partitions, Map<String, String> configs) throws InterruptedException {
    NewTopic newTopic = new NewTopic(topic, partitions, replicationFactor()).configs(configs);
    await(admin.createTopics(List.of(newTopic)).all(), "create topic " + topic);
    waitUntil(topic + " to have " + partitions + " led partitions", () -> {
      try {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
        return d.partitions().size() == partitions && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty());
      } catch (InterruptedException | ExecutionException | TimeoutException e) {
        throw new IllegalStateException(e);
      }
    });
  }
}
