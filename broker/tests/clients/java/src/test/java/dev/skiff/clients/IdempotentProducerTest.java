package dev.skiff.clients;

import static dev.skiff.clients.ClientSupport.OP_TIMEOUT;
import static dev.skiff.clients.ClientSupport.await;
import static dev.skiff.clients.ClientSupport.checkLog;
import static dev.skiff.clients.ClientSupport.clientConfig;
import static dev.skiff.clients.ClientSupport.createTopic;
import static dev.skiff.clients.ClientSupport.messages;
import static dev.skiff.clients.ClientSupport.uniqueName;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.skiff.clients.ClientSupport.Consumed;
import dev.skiff.clients.ClientSupport.Message;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/** The idempotent producer with acks=all: every send acknowledged once, stored as acknowledged. */
class IdempotentProducerTest {
  private static final int PARTITIONS = 3;

  @Test
  void idempotent_producer_with_acks_all_stores_every_record_once_in_key_order() throws Exception {
    String topic = uniqueName("idempotent", "topic");
    try (Admin admin = Admin.create(clientConfig())) {
      createTopic(admin, topic, PARTITIONS, Map.of());
    }
    List<Message> messages = messages(5000, 40);

    Properties props = clientConfig();
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
    props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

    Map<String, Message> acked = new HashMap<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
      AtomicReference<Exception> firstError = new AtomicReference<>();
      List<Future<RecordMetadata>> futures = new ArrayList<>();
      for (Message m : messages) {
        futures.add(producer.send(new ProducerRecord<>(topic, m.key(), m.value()), (md, e) -> {
          if (e != null) {
            firstError.compareAndSet(null, e);
          }
        }));
      }
      producer.flush();
      assertNull(firstError.get(), "a send failed: " + firstError.get());
      for (int i = 0; i < futures.size(); i++) {
        RecordMetadata md = futures.get(i).get(OP_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        assertTrue(md.hasOffset(), "no offset for message " + i);
        Message previous = acked.put(md.partition() + "/" + md.offset(), messages.get(i));
        assertNull(previous, "two sends acknowledged at " + md.partition() + "/" + md.offset());
      }
    }

    List<Consumed> consumed = readAll(topic);
    checkLog(consumed, messages, true);
    for (Consumed c : consumed) {
      assertEquals(acked.get(c.partition() + "/" + c.offset()), new Message(c.key(), c.value()),
          "stored record differs from its acknowledgement at " + c.partition() + "/" + c.offset());
    }
    try (Admin admin = Admin.create(clientConfig())) {
      await(admin.deleteTopics(List.of(topic)).all(), "delete topic");
    }
  }

  /** Every record up to the log end offsets seen at the start, by assignment (no group). */
  static List<Consumed> readAll(String topic) throws InterruptedException, ExecutionException, TimeoutException {
    Properties props = clientConfig();
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
      List<TopicPartition> tps = IntStream.range(0, PARTITIONS).mapToObj(p -> new TopicPartition(topic, p)).toList();
      consumer.assign(tps);
      consumer.seekToBeginning(tps);
      Map<TopicPartition, Long> ends = consumer.endOffsets(tps, OP_TIMEOUT);
      List<Consumed> out = new ArrayList<>();
      long deadline = System.nanoTime() + OP_TIMEOUT.toNanos();
      while (tps.stream().anyMatch(tp -> consumer.position(tp, OP_TIMEOUT) < ends.get(tp))) {
        if (System.nanoTime() > deadline) {
          fail("read stalled; log ends " + ends);
        }
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
          out.add(new Consumed(r.partition(), r.offset(), r.key(), r.value()));
        }
      }
      return out;
    }
  }
}
