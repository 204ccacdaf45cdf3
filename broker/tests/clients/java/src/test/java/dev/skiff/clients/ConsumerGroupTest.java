package dev.skiff.clients;

import static dev.skiff.clients.ClientSupport.OP_TIMEOUT;
import static dev.skiff.clients.ClientSupport.await;
import static dev.skiff.clients.ClientSupport.checkLog;
import static dev.skiff.clients.ClientSupport.clientConfig;
import static dev.skiff.clients.ClientSupport.createTopic;
import static dev.skiff.clients.ClientSupport.messages;
import static dev.skiff.clients.ClientSupport.uniqueName;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.skiff.clients.ClientSupport.Consumed;
import dev.skiff.clients.ClientSupport.Message;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ConsumerGroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * A classic-protocol consumer group: member A consumes alone, member B joins mid-way, and
 * with commits after every poll and on revocation the two see every record exactly once.
 */
class ConsumerGroupTest {
  private static final int PARTITIONS = 6;

  /** One member, polled from the test thread (the Java consumer is single-threaded). */
  private static final class Member implements ConsumerRebalanceListener {
    final String name;
    final KafkaConsumer<String, String> consumer;
    final List<Consumed> records = new ArrayList<>();
    final Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
    final List<Set<Integer>> assignments = new ArrayList<>();
    int revocations;

    Member(String name, String group, String topic) {
      this.name = name;
      Properties props = clientConfig();
      props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
      props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
      props.put(ConsumerConfig.CLIENT_ID_CONFIG, group + "-" + name);
      props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
      props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
      props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "50");
      props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
      props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
      consumer = new KafkaConsumer<>(props);
      consumer.subscribe(List.of(topic), this);
    }

    /** One poll: take the records, then commit exactly what was taken. */
    void poll() {
      for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(100))) {
        records.add(new Consumed(r.partition(), r.offset(), r.key(), r.value()));
        pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
      }
      commitPending();
    }

    void commitPending() {
      if (!pending.isEmpty()) {
        consumer.commitSync(pending, OP_TIMEOUT);
        pending.clear();
      }
    }

    Set<Integer> currentAssignment() {
      return assignments.isEmpty() ? Set.of() : assignments.get(assignments.size() - 1);
    }

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
      revocations++;
      commitPending();
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
      assignments.add(partitions.stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new)));
    }
  }

  @Test
  void two_members_rebalance_mid_stream_and_consume_every_record_exactly_once() throws Exception {
    String topic = uniqueName("group", "topic");
    String group = uniqueName("group", "group");
    List<Message> messages = messages(6000, 60);
    List<Message> first = messages.subList(0, 3000);
    List<Message> second = messages.subList(3000, messages.size());

    try (Admin admin = Admin.create(clientConfig());
        KafkaProducer<String, String> producer = producer()) {
      createTopic(admin, topic, PARTITIONS, Map.of());
      send(producer, topic, first);

      Member a = new Member("a", group, topic);
      Member b = null;
      try {
        long deadline = deadline();
        while (a.records.size() < 500 && System.nanoTime() < deadline) {
          a.poll();
        }
        assertTrue(a.records.size() >= 500, "A alone consumed only " + a.records.size());
        assertTrue(a.records.size() < first.size(), "A read everything before B joined; the rebalance would prove nothing");

        b = new Member("b", group, topic);
        deadline = deadline();
        while (b.currentAssignment().isEmpty() && System.nanoTime() < deadline) {
          a.poll();
          b.poll();
        }
        assertFalse(b.currentAssignment().isEmpty(), "B never got partitions");
        assertTrue(a.revocations >= 1, "A's partitions were never revoked when B joined");

        send(producer, topic, second);
        deadline = deadline();
        while (a.records.size() + b.records.size() < messages.size() && System.nanoTime() < deadline) {
          a.poll();
          b.poll();
        }
        // Keep both polling a little: whatever arrives now is a duplicate.
        long settle = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
        while (System.nanoTime() < settle) {
          a.poll();
          b.poll();
        }

        assertFalse(a.records.isEmpty() || b.records.isEmpty(), "A consumed " + a.records.size() + ", B " + b.records.size());
        Set<Integer> union = new HashSet<>(a.currentAssignment());
        union.addAll(b.currentAssignment());
        assertEquals(a.currentAssignment().size() + b.currentAssignment().size(), union.size(),
            "overlapping assignments A=" + a.currentAssignment() + " B=" + b.currentAssignment());
        assertEquals(IntStream.range(0, PARTITIONS).boxed().collect(Collectors.toSet()), union);
        List<Consumed> all = new ArrayList<>(a.records);
        all.addAll(b.records);
        checkLog(all, messages, true);

        ConsumerGroupDescription description = await(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group),
            "describe group");
        assertEquals(ConsumerGroupState.STABLE, description.state());
        assertEquals(2, description.members().size(), "members " + description.members());
        Set<Integer> described = new HashSet<>();
        for (MemberDescription m : description.members()) {
          m.assignment().topicPartitions().forEach(tp -> assertTrue(described.add(tp.partition()), "partition " + tp + " assigned twice"));
        }
        assertEquals(union, described);

        Map<TopicPartition, OffsetAndMetadata> committed =
            await(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(), "list group offsets");
        Map<TopicPartition, Long> ends = a.consumer.endOffsets(
            IntStream.range(0, PARTITIONS).mapToObj(p -> new TopicPartition(topic, p)).toList(), OP_TIMEOUT);
        assertEquals(ends, committed.entrySet().stream().collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset())),
            "committed offsets differ from log ends");
      } finally {
        a.consumer.close(OP_TIMEOUT);
        if (b != null) {
          b.consumer.close(OP_TIMEOUT);
        }
      }
      await(admin.deleteTopics(List.of(topic)).all(), "delete topic");
    }
  }

  private static long deadline() {
    return System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
  }

  private static KafkaProducer<String, String> producer() {
    Properties props = clientConfig();
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    return new KafkaProducer<>(props);
  }

  private static void send(KafkaProducer<String, String> producer, String topic, List<Message> messages) throws Exception {
    List<Future<?>> futures = new ArrayList<>();
    for (Message m : messages) {
      futures.add(producer.send(new ProducerRecord<>(topic, m.key(), m.value())));
    }
    producer.flush();
    for (Future<?> f : futures) {
      f.get(OP_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
    }
  }
}
