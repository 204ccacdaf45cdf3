"""The same scenarios against Apache Kafka 3.9.2 (KRaft, from the cache): a reference
run that validates the scenarios themselves before Skiff's cluster exists, and a
yardstick afterwards (``SKIFF_CLUSTER_TARGET=kafka``).

Each node is a JVM (``kafka.Kafka``) on the ports the harness chose; voters run
``process.roles=broker,controller``, learners ``broker`` only (Kafka's observers).
Kafka has no HTTP admin endpoint, so the parts of the scenarios that read Skiff's
``/v1/status`` use Metadata alone, and ``restart_safety`` is emulated from Metadata
(no partition would fall below min.insync.replicas) — labelled as such in the output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from cluster import CACHE_DIR, Cluster, HarnessError, Node

KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "3.9.2")
LIBS = CACHE_DIR / "kafka" / KAFKA_VERSION / "libs"
HEAP = os.environ.get("SKIFF_KAFKA_HEAP", "-Xmx384m -Xms128m")

#: Skiff-only settings, not passed to Kafka.
SKIFF_ONLY = {"skiff.ack.durability", "log.preallocate"}


class KafkaCluster(Cluster):
    has_admin_http = False
    listen_timeout_s = 120.0
    sigterm_exit_codes = (0, 143)  # the JVM exits 143 after its shutdown hooks on SIGTERM

    def __init__(self, binary: str, workdir: Path, n: int = 3, **kw):
        kw["clustered"] = True
        kw.setdefault("ready_timeout_s", 120.0)
        super().__init__(binary, workdir, n, **kw)
        if not (LIBS / ".complete").exists():
            raise HarnessError(f"Apache Kafka {KAFKA_VERSION} is not cached in {LIBS}: run e2e/tools/kafka.sh fetch")
        self._formatted = False

    def _properties(self, node: Node) -> str:
        voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values() if n.voter)
        listeners = f"PLAINTEXT://{node.address}" + (f",CONTROLLER://127.0.0.1:{node.controller_port}" if node.voter else "")
        props = {
            "process.roles": "broker,controller" if node.voter else "broker",
            "node.id": str(node.id),
            "controller.quorum.voters": voters,
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://{node.address}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.data_dir),
        }
        for k, v in self.settings.items():
            if k not in SKIFF_ONLY:
                props[k] = v
        session = int(props.get("broker.session.timeout.ms", "9000"))
        props.setdefault("broker.heartbeat.interval.ms", str(max(100, session // 4)))
        if len(self.nodes) < 3:
            for k in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                      "default.replication.factor"):
                props[k] = "1"
            props["transaction.state.log.min.isr"] = "1"
            props["min.insync.replicas"] = "1"
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _write_config(self, node: Node) -> Path:
        path = node.dir / "server.properties"
        path.write_text(self._properties(node))
        (node.dir / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.org.apache.kafka.clients=WARN\n")
        # Kafka 4.x logs through log4j2 and ignores the file above (3.9 ignores this one).
        (node.dir / "log4j2.properties").write_text(
            "appender.stdout.type=Console\n"
            "appender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\n"
            "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
            "rootLogger.level=INFO\n"
            "rootLogger.appenderRef.stdout.ref=STDOUT\n"
            "logger.request.name=kafka.request.logger\n"
            "logger.request.level=WARN\n"
            "logger.clients.name=org.apache.kafka.clients\n"
            "logger.clients.level=WARN\n")
        return path

    def _java(self, node: Node, heap: str) -> list[str]:
        return ["java", *heap.split(), "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{node.dir / 'log4j.properties'}",
                f"-Dlog4j2.configurationFile={node.dir / 'log4j2.properties'}", "-cp", f"{LIBS}/*"]

    def start(self) -> "Cluster":
        if not self._formatted:
            procs = []
            for node in self.nodes.values():
                cfg = self._write_config(node)
                procs.append((node, subprocess.Popen(
                    [*self._java(node, "-Xmx256m"), "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                     "-c", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
            for node, p in procs:
                out, _ = p.communicate(timeout=120)
                if p.returncode != 0:
                    raise HarnessError(f"kafka storage format of node {node.id} failed:\n{out[-2000:]}")
            self._formatted = True
        return super().start()

    def argv(self, node: Node) -> list[str]:
        return [*self._java(node, HEAP), "kafka.Kafka", str(node.dir / "server.properties")]

    def readyz(self, node_id: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.nodes[node_id].kafka_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def restart_safety(self, node_id: int) -> tuple[bool, str]:
        """Emulated from Metadata: safe if no partition with ``node_id`` in its ISR would
        fall below min.insync.replicas (taken as 2 for RF >= 2) without it."""
        md = self.metadata()
        for t in md.topics.values():
            for p in t.partitions.values():
                min_isr = 2 if len(p.replicas) >= 2 else 1
                if node_id in p.isrs and len(p.isrs) - 1 < min_isr:
                    return False, f"emulated: {t.topic}-{p.id} isr {p.isrs}"
                if node_id not in p.isrs and len(p.isrs) < min_isr:
                    return False, f"emulated: {t.topic}-{p.id} already below min.insync.replicas"
        return True, "emulated from Metadata"

    def crashed(self) -> list[str]:
        return [f"node {n.id} exited on its own with status {n.proc.returncode}" for n in self.nodes.values()
                if n.proc is not None and n.proc.poll() is not None and not n.expected_exit]

    def terminate(self, node_id: int, timeout_s: float = 60.0) -> float:
        node = self.nodes[node_id]
        assert node.serving, f"node {node_id} is not serving"
        node.expected_exit = True
        t = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        try:
            code = node.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(timeout=10)
            raise HarnessError(f"node {node_id} did not exit within {timeout_s:.0f}s of SIGTERM") from None
        node.exit_codes.append(code)
        if code not in self.sigterm_exit_codes:
            raise HarnessError(f"node {node_id} exited with {code} after SIGTERM\n{self.log_tail(node_id, 25)}")
        return time.monotonic() - t
