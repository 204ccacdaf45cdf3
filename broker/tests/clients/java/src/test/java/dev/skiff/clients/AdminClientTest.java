package dev.skiff.clients;

import static dev.skiff.clients.ClientSupport.OP_TIMEOUT;
import static dev.skiff.clients.ClientSupport.await;
import static dev.skiff.clients.ClientSupport.bootstrap;
import static dev.skiff.clients.ClientSupport.clientConfig;
import static dev.skiff.clients.ClientSupport.createTopic;
import static dev.skiff.clients.ClientSupport.replicationFactor;
import static dev.skiff.clients.ClientSupport.uniqueName;
import static dev.skiff.clients.ClientSupport.waitUntil;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** AdminClient: describe cluster, create/describe/configure/delete topics, dynamic broker configs. */
class AdminClientTest {
  private Admin admin;

  @BeforeEach
  void open() {
    admin = Admin.create(clientConfig());
  }

  @AfterEach
  void close() {
    admin.close(OP_TIMEOUT);
  }

  @Test
  void describe_cluster_lists_the_bootstrap_broker() throws Exception {
    DescribeClusterResult cluster = admin.describeCluster();
    String clusterId = await(cluster.clusterId(), "cluster id");
    Collection<Node> nodes = await(cluster.nodes(), "cluster nodes");
    Node controller = await(cluster.controller(), "controller");

    assertNotNull(clusterId);
    assertFalse(clusterId.isBlank(), "cluster id is blank");
    Set<String> advertised = nodes.stream().map(n -> n.host() + ":" + n.port()).collect(Collectors.toSet());
    assertTrue(Arrays.stream(bootstrap().split(",")).map(String::trim).anyMatch(advertised::contains),
        "bootstrap " + bootstrap() + " not among advertised nodes " + advertised);
    assertNotNull(controller);
    assertTrue(nodes.stream().anyMatch(n -> n.id() == controller.id()), "controller " + controller + " not among " + nodes);

    // DescribeConfigs on a broker resource: the keys carry Kafka's names.
    ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(nodes.iterator().next().id()));
    Config config = await(admin.describeConfigs(List.of(broker)).all(), "describe broker configs").get(broker);
    ConfigEntry minIsr = config.get("min.insync.replicas");
    assertNotNull(minIsr, "broker config lacks min.insync.replicas");
    assertTrue(Integer.parseInt(minIsr.value()) >= 1, "min.insync.replicas = " + minIsr.value());
  }

  @Test
  void create_describe_configure_and_delete_a_topic() throws Exception {
    String topic = uniqueName("admin", "topic");
    createTopic(admin, topic, 3, Map.of("retention.ms", "3600000"));

    ExecutionException exists = assertThrows(ExecutionException.class,
        () -> admin.createTopics(List.of(new NewTopic(topic, 3, replicationFactor()))).all().get(OP_TIMEOUT.toSeconds(), TimeUnit.SECONDS));
    assertInstanceOf(TopicExistsException.class, exists.getCause());

    TopicDescription description = await(admin.describeTopics(List.of(topic)).allTopicNames(), "describe topic").get(topic);
    assertEquals(topic, description.name());
    assertFalse(description.isInternal());
    assertFalse(Uuid.ZERO_UUID.equals(description.topicId()), "topic id is zero");
    assertEquals(List.of(0, 1, 2), description.partitions().stream().map(TopicPartitionInfo::partition).toList());
    for (TopicPartitionInfo p : description.partitions()) {
      assertNotNull(p.leader(), "partition " + p.partition() + " has no leader");
      assertEquals(replicationFactor(), p.replicas().size(), "partition " + p.partition() + " replicas " + p.replicas());
      assertTrue(p.isr().contains(p.leader()), "partition " + p.partition() + ": leader not in ISR " + p.isr());
    }
    // The same topic looked up by id.
    TopicDescription byId = await(admin.describeTopics(TopicCollection.ofTopicIds(List.of(description.topicId())))
        .allTopicIds(), "describe topic by id").get(description.topicId());
    assertEquals(topic, byId.name());

    ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    Config config = await(admin.describeConfigs(List.of(resource)).all(), "describe topic configs").get(resource);
    assertEquals("3600000", config.get("retention.ms").value());
    assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, config.get("retention.ms").source());
    // Kafka's topic default, reported by Skiff under the same name and value.
    assertEquals("delete", config.get("cleanup.policy").value());

    assertTrue(await(admin.listTopics().names(), "list topics").contains(topic));
    await(admin.deleteTopics(List.of(topic)).all(), "delete topic");
    waitUntil(topic + " to disappear", () -> {
      try {
        return !admin.listTopics().names().get(10, TimeUnit.SECONDS).contains(topic);
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    });
    ExecutionException gone = assertThrows(ExecutionException.class,
        () -> admin.describeTopics(List.of(topic)).allTopicNames().get(OP_TIMEOUT.toSeconds(), TimeUnit.SECONDS));
    assertInstanceOf(UnknownTopicOrPartitionException.class, gone.getCause());
  }

  private void alterClusterDefault(String key, String value, AlterConfigOp.OpType op) throws Exception {
    ConfigResource defaults = new ConfigResource(ConfigResource.Type.BROKER, "");
    AlterConfigOp change = new AlterConfigOp(new ConfigEntry(key, value), op);
    await(admin.incrementalAlterConfigs(Map.of(defaults, List.of(change))).all(), op + " cluster-wide " + key);
  }

  private ConfigEntry topicConfig(String topic, String key) {
    ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    try {
      return admin.describeConfigs(List.of(resource)).all().get(OP_TIMEOUT.toSeconds(), TimeUnit.SECONDS).get(resource).get(key);
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * A dynamic broker setting (resource BROKER "", kafka-configs --entity-default) changes the
   * default of every topic without its own, while the brokers run; a setting read only at
   * start-up is refused.
   */
  @Test
  void a_cluster_wide_broker_default_reaches_topics_without_their_own() throws Exception {
    String topic = uniqueName("admin", "defaults");
    createTopic(admin, topic, 1, Map.of());
    String key = "log.retention.bytes";
    String value = String.valueOf(1L << 40); // 1 TiB: harmless to the other tests
    alterClusterDefault(key, value, AlterConfigOp.OpType.SET);
    try {
      waitUntil("retention.bytes of " + topic + " to follow the cluster-wide " + key,
          () -> value.equals(topicConfig(topic, "retention.bytes").value()));
      assertEquals(ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, topicConfig(topic, "retention.bytes").source());
      ConfigResource defaults = new ConfigResource(ConfigResource.Type.BROKER, "");
      Config shown = await(admin.describeConfigs(List.of(defaults)).all(), "describe cluster-wide defaults").get(defaults);
      assertEquals(value, shown.get(key).value());
      assertEquals(ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, shown.get(key).source());

      ExecutionException refused = assertThrows(ExecutionException.class, () -> admin.incrementalAlterConfigs(Map.of(defaults,
          List.of(new AlterConfigOp(new ConfigEntry("auto.create.topics.enable", "false"), AlterConfigOp.OpType.SET))))
          .all().get(OP_TIMEOUT.toSeconds(), TimeUnit.SECONDS));
      assertTrue(refused.getCause() instanceof InvalidConfigurationException || refused.getCause() instanceof InvalidRequestException,
          "a start-up-only setting was refused with " + refused.getCause());
    } finally {
      alterClusterDefault(key, null, AlterConfigOp.OpType.DELETE);
    }
    waitUntil("retention.bytes of " + topic + " to revert to its default", () -> "-1".equals(topicConfig(topic, "retention.bytes").value()));
    assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, topicConfig(topic, "retention.bytes").source());
  }
}
