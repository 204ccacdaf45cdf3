"""Three-broker clusters (Skiff and Apache Kafka) for the replicated scenarios.

Reuses the fault-injection harness of the cluster tests (`broker/tests/cluster/cluster.py`
and `kafka_target.py`): the same launcher, ports, readiness checks (Skiff: /readyz on
every broker and Metadata listing all three; Kafka: the port open and Metadata listing
all three), kill -9, SIGTERM + restart on the same data directory, and "fully
replicated" (Metadata: full ISR everywhere, and for Skiff /v1/status under_replicated 0
on every broker). Only the settings differ from the tests: the benchmark runs each
broker with its defaults, apart from what the scenarios of the issue fix for both
(below), and Kafka with the JVM options of kafka-server-start.sh (1 GiB heap, G1), as
`e2e/tools/kafka.sh` does for the single node.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from brokers import ROOT, SKIFF_BIN, BrokerError, Running, Target

sys.path.insert(0, str(ROOT / "broker" / "tests" / "cluster"))

import cluster as harness  # noqa: E402
import kafka_target  # noqa: E402

#: What every 3-broker target runs with, Kafka and Skiff alike (issue: RF 3,
#: min.insync.replicas 2). Segment size: both brokers' default, 1 GiB, named explicitly so
#: it is the same on both: Skiff "preallocates" the active segment with set_len, a sparse
#: file (no disk blocks), so nobody pays for preallocation in disk writes.
CLUSTER_SETTINGS = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "log.segment.bytes": str(1 << 30),
}
#: Kafka's defaults that kafka_target.py would otherwise derive differently.
KAFKA_ONLY = {"broker.heartbeat.interval.ms": "2000", "broker.session.timeout.ms": "9000"}
KAFKA_SERVER_JVM = ("-Xmx1G -Xms1G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
                    "-XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true")
READY_TIMEOUT_S = 180


class BenchKafkaCluster(kafka_target.KafkaCluster):
    """kafka_target's cluster, with kafka-server-start.sh's JVM instead of the tests' small one."""

    def argv(self, node):
        return ["java", *KAFKA_SERVER_JVM.split(), f"-Dlog4j.configuration=file:{node.dir / 'log4j.properties'}",
                "-cp", f"{kafka_target.LIBS}/*", "kafka.Kafka", str(node.dir / "server.properties")]

    def format(self) -> None:
        """kafka-storage format of every node (JVMs of their own), not counted in start time."""
        if self._formatted:
            return
        procs = []
        for node in self.nodes.values():
            cfg = self._write_config(node)
            procs.append((node, subprocess.Popen(
                [*self._java(node, "-Xmx256m"), "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                 "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        for node, p in procs:
            out, _ = p.communicate(timeout=120)
            if p.returncode != 0:
                raise BrokerError(f"kafka storage format of node {node.id} failed: {out[-500:]}")
        self._formatted = True


def make(target: Target, workdir: Path):
    settings = dict(CLUSTER_SETTINGS)
    settings.update(dict(target.settings))
    if target.kind == "kafka":
        settings.update(KAFKA_ONLY)
        c = BenchKafkaCluster("java", workdir, 3, ready_timeout_s=READY_TIMEOUT_S)
    else:
        if not SKIFF_BIN.exists():
            raise BrokerError(f"{SKIFF_BIN} missing (cargo build --release -p skiff-broker)")
        c = harness.Cluster(str(SKIFF_BIN), workdir, 3, ready_timeout_s=READY_TIMEOUT_S)
    c.settings = settings  # exactly these: not the tests' fast timeouts and small segments
    return c


def start(target: Target, workdir: Path) -> Running:
    """Start three nodes; start to serving = first process start to every node ready and
    listing all three brokers in Metadata (Kafka: storage format not counted)."""
    c = make(target, workdir)
    if isinstance(c, BenchKafkaCluster):
        c.format()

    def stop() -> None:
        c.close()
        for n in c.nodes.values():
            shutil.rmtree(n.data_dir, ignore_errors=True)

    running = Running(target, c.bootstrap(), [], workdir, 0.0, _stop=stop, cluster=c)
    t0 = time.monotonic()
    try:
        c.start()
    except (harness.HarnessError, OSError) as e:
        stop()
        raise BrokerError(f"{target.label}: 3 brokers did not become ready: {str(e)[:1500]}") from None
    running.start_to_serving_ms = (time.monotonic() - t0) * 1e3
    running.pids = running.live_pids()
    return running


def create_topic(running: Running, name: str, partitions: int, config: dict[str, str] | None = None,
                 timeout_s: float = 120.0) -> float:
    """CreateTopics RF 3; returns seconds until every partition has a leader and a full ISR
    in the Metadata of every broker."""
    c = running.cluster
    t0 = time.monotonic()
    try:
        c.create_topic(name, partitions, 3, config=config, timeout_s=timeout_s)
    except harness.HarnessError as e:
        raise BrokerError(f"create {name} ({partitions} partitions, RF 3): {str(e)[:800]}") from None
    return time.monotonic() - t0
