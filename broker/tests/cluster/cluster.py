"""A Skiff cluster of real ``skiff-broker`` processes on loopback, and the faults the
scenarios inject into it.

Each broker gets three free 127.0.0.1 ports (Kafka, HTTP admin, Raft controller), its
own data directory and an append-only log file (every (re)start is marked in it).
Brokers are started with ``--controller-listen`` and ``--voters`` (the first
``voters`` brokers are Raft voters, the rest learners), all with one
``--cluster-id``. ``clustered=False`` starts one broker with neither flag: today's
single broker, which is how the harness is tested before the cluster lands.

Every wait is bounded and fails with what it was waiting for; ``close()`` kills every
process (stopped ones are continued first) and is called by the fixtures whether the
test passed or not.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigEntry, AlterConfigOpType, NewTopic

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[3]
CACHE_DIR = Path(os.environ.get("SKIFF_CACHE_DIR") or Path.home() / ".cache/skiff")
KAFKA_SH = REPO / "e2e/tools/kafka.sh"
REASSIGN_TOOL = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"

#: Broker settings every cluster of the scenarios uses (a test adds or overrides).
#: Small segments (also rolled during the tests) and few __consumer_offsets
#: partitions: the log preallocates whole segments, and the machine is small.
BASE_SETTINGS = {
    "log.segment.bytes": "1048576",
    "offsets.topic.segment.bytes": "1048576",
    "offsets.topic.num.partitions": "6",
    "group.initial.rebalance.delay.ms": "0",
}

#: Cluster settings (not understood by a broker without the cluster; see README).
CLUSTER_SETTINGS = {
    "broker.session.timeout.ms": "1000",
    "replica.lag.time.max.ms": "5000",
    "min.insync.replicas": "2",
    "default.replication.factor": "3",
    "offsets.topic.replication.factor": "3",
    "skiff.ack.durability": "fsync",
}

# librdkafka logs every refused connection; the fixtures' clients log to a file instead.
_quiet = logging.getLogger("skiff.cluster.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


class HarnessError(AssertionError):
    """A wait ran out or the cluster misbehaved; the message says what and where."""


class Missing(HarnessError):
    """The broker lacks a flag, setting, API or field the scenario needs (not landed yet).
    Waits do not retry it: the test fails at once and says what is missing."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct free 127.0.0.1 ports. Every socket stays bound until all
    are chosen: bound and closed one at a time, the kernel may hand the same
    port out twice (CI saw a broker get one port for Kafka and admin both)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_until(probe: Callable[[], T], what: str, timeout_s: float, interval_s: float = 0.1) -> T:
    """Call ``probe`` until it returns something other than None or False (0 is a
    result: broker ids start at 0); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
            last = result
        except Missing:
            raise
        except Exception as e:  # noqa: BLE001 - reported if the wait runs out
            last = e
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval_s)


def kafka_uuid() -> str:
    """A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding; like
    Kafka's Uuid.randomUuid, never starting with '-' (command lines would take it for a
    flag; the harness also passes it as --cluster-id=...)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def http(method: str, url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    """(status, body) of one HTTP request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, method=method, data=b"" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def pick(obj: dict, *names: str):
    """The first of ``names`` present in ``obj`` (the status JSON's field names are a guess)."""
    for n in names:
        if n in obj:
            return obj[n]
    raise Missing(f"none of the fields {names} in /v1/status: {json.dumps(obj)[:500]}")


@dataclass
class Node:
    id: int
    kafka_port: int
    admin_port: int
    controller_port: int
    dir: Path
    voter: bool
    proc: subprocess.Popen | None = None
    paused: bool = False
    starts: int = 0
    #: exits the harness caused (kill -9, SIGTERM); anything else is a crash
    expected_exit: bool = False
    exit_codes: list[int] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "broker.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def serving(self) -> bool:
        """Running and not stopped: it can answer requests."""
        return self.running and not self.paused


class Cluster:
    """N broker processes. Nodes have ids 0..n-1 (a pod's ordinal, as the operator does)."""

    #: Skiff's HTTP admin endpoint (/readyz, /v1/status, ...); the Kafka reference has none.
    has_admin_http = True
    listen_timeout_s = 30.0

    def __init__(
        self,
        binary: str,
        workdir: Path,
        n: int = 3,
        *,
        voters: int | None = None,
        clustered: bool = True,
        settings: dict[str, str] | None = None,
        ready_timeout_s: float = 60.0,
    ):
        if not clustered and n != 1:
            raise ValueError("without the cluster flags only one broker can run")
        self.binary = binary
        self.workdir = Path(workdir)
        self.clustered = clustered
        self.cluster_id = kafka_uuid()
        self.ready_timeout_s = ready_timeout_s
        self.settings = dict(BASE_SETTINGS)
        if clustered:
            self.settings.update(CLUSTER_SETTINGS)
        self.settings.update(settings or {})
        voters = n if voters is None else voters
        self.nodes: dict[int, Node] = {}
        ports = iter(free_ports(3 * n))
        for i in range(n):
            d = self.workdir / f"broker-{i}"
            d.mkdir(parents=True, exist_ok=True)
            self.nodes[i] = Node(i, next(ports), next(ports), next(ports), d, voter=i < voters)
        self.client_log = self.workdir / "clients.log"
        self._closed = False

    # ---- addresses -------------------------------------------------------------------

    @property
    def voter_ids(self) -> list[int]:
        return [n.id for n in self.nodes.values() if n.voter]

    @property
    def learner_ids(self) -> list[int]:
        return [n.id for n in self.nodes.values() if not n.voter]

    @property
    def voters_flag(self) -> str:
        return ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes.values() if n.voter)

    def bootstrap(self, ids: Iterable[int] | None = None) -> str:
        """Kafka addresses of ``ids`` (default: every broker)."""
        ids = list(self.nodes) if ids is None else list(ids)
        return ",".join(self.nodes[i].address for i in ids)

    def serving_ids(self) -> list[int]:
        return [n.id for n in self.nodes.values() if n.serving]

    def argv(self, node: Node) -> list[str]:
        # --flag=value throughout: a value starting with '-' is not taken for a flag
        args = [
            self.binary,
            f"--node-id={node.id}",
            f"--data-dir={node.data_dir}",
            f"--listen={node.address}",
            f"--admin-listen=127.0.0.1:{node.admin_port}",
            f"--cluster-id={self.cluster_id}",
        ]
        if self.clustered:
            args += [f"--controller-listen=127.0.0.1:{node.controller_port}", f"--voters={self.voters_flag}"]
        for k, v in self.settings.items():
            args += [f"--set={k}={v}"]
        return args

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> "Cluster":
        """Start every broker, then wait until the cluster is ready."""
        for node in self.nodes.values():
            self._spawn(node)
        for node in self.nodes.values():
            self._wait_listening(node)
        self.wait_ready()
        return self

    def _spawn(self, node: Node) -> None:
        assert not node.running, f"broker {node.id} is already running"
        node.starts += 1
        node.expected_exit = False
        node.paused = False
        argv = self.argv(node)
        with open(node.log_path, "ab") as log:
            log.write(f"\n----- harness: start #{node.starts} of broker {node.id} at {time.strftime('%H:%M:%S')}: "
                      f"{' '.join(argv)}\n".encode())
            log.flush()
            # setpriv --pdeathsig: the broker dies with this Python process, whatever
            # kills it; the process group is the test runner's, which kills it on timeout.
            node.proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--", *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, NO_COLOR="1", RUST_LOG=os.environ.get("SKIFF_BROKER_LOG", "info")))

    def _wait_listening(self, node: Node) -> None:
        timeout_s = self.listen_timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            if node.proc.poll() is not None:
                node.exit_codes.append(node.proc.returncode)
                hint = self._missing_feature_hint(node)
                raise (Missing if hint else HarnessError)(
                    f"broker {node.id} exited with status {node.proc.returncode} before listening"
                    f"{hint}\n{self.log_tail(node.id, 25)}")
            try:
                socket.create_connection(("127.0.0.1", node.kafka_port), timeout=0.2).close()
                return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise HarnessError(f"broker {node.id} did not listen on {node.address} within {timeout_s:.0f}s\n"
                                   f"{self.log_tail(node.id, 25)}")
            time.sleep(0.02)

    def _missing_feature_hint(self, node: Node) -> str:
        text = self.log_text(node.id)[-4000:]
        m = re.search(r"unexpected argument '(--[a-z-]+)'", text)
        if m:
            return f": this skiff-broker has no {m[1]} flag yet (the cluster has not landed)"
        m = re.search(r"unknown (?:setting|key|config)[^\n]*?([a-z][a-z0-9.]+\.[a-z0-9.]+)", text, re.I)
        if m:
            return f": this skiff-broker does not know the setting {m[1]} yet"
        return ""

    def restart(self, node_id: int, ready: bool = True) -> None:
        """Start a stopped broker again on the same data directory and ports."""
        node = self.nodes[node_id]
        assert not node.running, f"broker {node_id} is still running"
        self._spawn(node)
        self._wait_listening(node)
        if ready:
            self.wait_ready()

    def kill9(self, node_id: int) -> float:
        """SIGKILL; returns the monotonic time the signal was sent."""
        node = self.nodes[node_id]
        assert node.running, f"broker {node_id} is not running"
        node.expected_exit = True
        t = time.monotonic()
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)
        node.exit_codes.append(node.proc.returncode)
        node.paused = False
        return t

    def sigstop(self, node_id: int) -> float:
        node = self.nodes[node_id]
        assert node.serving, f"broker {node_id} is not serving"
        node.paused = True
        t = time.monotonic()
        node.proc.send_signal(signal.SIGSTOP)
        return t

    def sigcont(self, node_id: int) -> float:
        node = self.nodes[node_id]
        assert node.running and node.paused, f"broker {node_id} is not stopped"
        t = time.monotonic()
        node.proc.send_signal(signal.SIGCONT)
        node.paused = False
        return t

    def terminate(self, node_id: int, timeout_s: float = 30.0) -> float:
        """SIGTERM and wait for exit status 0; returns how long the shutdown took."""
        node = self.nodes[node_id]
        assert node.serving, f"broker {node_id} is not serving"
        node.expected_exit = True
        t = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        try:
            code = node.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(timeout=10)
            raise HarnessError(f"broker {node_id} did not exit within {timeout_s:.0f}s of SIGTERM\n{self.log_tail(node_id, 25)}")
        node.exit_codes.append(code)
        if code != 0:
            raise HarnessError(f"broker {node_id} exited with status {code} after SIGTERM\n{self.log_tail(node_id, 25)}")
        return time.monotonic() - t

    def close(self) -> None:
        """Kill every broker process (continue stopped ones first). Idempotent."""
        for node in self.nodes.values():
            if node.proc is None or node.proc.poll() is not None:
                continue
            node.expected_exit = True
            try:
                if node.paused:
                    node.proc.send_signal(signal.SIGCONT)
                node.proc.kill()
                node.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._closed = True

    def crashed(self) -> list[str]:
        """Brokers that exited without the harness asking them to, and panics in any log."""
        out = []
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is not None and not node.expected_exit:
                out.append(f"broker {node.id} exited on its own with status {node.proc.returncode}")
            if "panicked" in self.log_text(node.id):
                out.append(f"broker {node.id} panicked (see {node.log_path})")
        return out

    def assert_no_crash(self) -> None:
        problems = self.crashed()
        if problems:
            raise HarnessError("; ".join(problems) + "\n" + self.failure_report())

    # ---- logs --------------------------------------------------------------------------

    def log_text(self, node_id: int) -> str:
        try:
            return self.nodes[node_id].log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, node_id: int, lines: int = 40) -> str:
        text = self.log_text(node_id).splitlines()[-lines:]
        return f"--- broker {node_id} log tail ({self.nodes[node_id].log_path}):\n" + "\n".join(text)

    def failure_report(self, lines: int = 40) -> str:
        parts = [f"cluster {self.cluster_id} in {self.workdir}"]
        for node in self.nodes.values():
            state = ("stopped (SIGSTOP)" if node.paused else "running") if node.running else (
                f"exited {node.proc.returncode}" if node.proc else "never started")
            parts.append(f"broker {node.id} ({'voter' if node.voter else 'learner'}, kafka {node.address}, "
                         f"admin {node.admin_port}, controller {node.controller_port}): {state}, started {node.starts}x")
        for node in self.nodes.values():
            parts.append(self.log_tail(node.id, lines))
        return "\n".join(parts)

    # ---- HTTP admin ----------------------------------------------------------------------

    def readyz(self, node_id: int) -> bool:
        try:
            return http("GET", self.nodes[node_id].admin_url + "/readyz", 1.0)[0] == 200
        except OSError:
            return False

    def status(self, node_id: int) -> dict:
        """``GET /v1/status`` as JSON."""
        code, body = http("GET", self.nodes[node_id].admin_url + "/v1/status")
        if code == 404:
            raise Missing(f"broker {node_id} has no GET /v1/status (404): the cluster admin endpoint has not landed")
        if code != 200:
            raise HarnessError(f"GET /v1/status on broker {node_id}: HTTP {code}: {body[:300]}")
        try:
            return json.loads(body)
        except ValueError:
            raise Missing(f"GET /v1/status on broker {node_id} is not JSON: {body[:300]}") from None

    def under_replicated(self, node_id: int) -> int:
        """Under-replicated partitions that broker ``node_id`` leads (/v1/status
        ``under_replicated``)."""
        v = pick(self.status(node_id), "under_replicated", "under_replicated_partitions")
        return len(v) if isinstance(v, (list, dict)) else int(v)

    def partitions_led(self, node_id: int) -> int:
        v = pick(self.status(node_id), "leaders", "partitions_led")
        return len(v) if isinstance(v, (list, dict)) else int(v)

    def restart_safety(self, node_id: int) -> tuple[bool, str]:
        """``GET /v1/restart-safety``: (safe, body). HTTP 200 with ``"safe": true`` is safe,
        409 (``"safe": false``, ``blocking`` partitions, ``quorum``) is not."""
        code, body = http("GET", self.nodes[node_id].admin_url + "/v1/restart-safety")
        if code == 404:
            raise Missing(f"broker {node_id} has no GET /v1/restart-safety (404): not landed yet")
        if code != 200:
            return False, body
        try:
            doc = json.loads(body)
        except ValueError:
            return True, body
        safe = doc.get("safe", doc.get("restart_safe", True)) if isinstance(doc, dict) else True
        return bool(safe), body

    def drain(self, node_id: int) -> str:
        """``POST /v1/drain``: move leadership away (maintenance mode)."""
        code, body = http("POST", self.nodes[node_id].admin_url + "/v1/drain", 10.0)
        if code == 404:
            raise Missing(f"broker {node_id} has no POST /v1/drain (404): not landed yet")
        if code >= 300:
            raise HarnessError(f"POST /v1/drain on broker {node_id}: HTTP {code}: {body[:300]}")
        return body

    def undrain(self, node_id: int) -> str:
        code, body = http("DELETE", self.nodes[node_id].admin_url + "/v1/drain", 10.0)
        if code >= 300:
            raise HarnessError(f"DELETE /v1/drain on broker {node_id}: HTTP {code}: {body[:300]}")
        return body

    # ---- Kafka clients -------------------------------------------------------------------

    def client_config(self, ids: Iterable[int] | None = None, **extra) -> dict:
        return {"bootstrap.servers": self.bootstrap(ids), "logger": _quiet, **extra}

    def admin(self, ids: Iterable[int] | None = None) -> AdminClient:
        """An admin client bootstrapped from ``ids`` (default: the serving brokers)."""
        return AdminClient(self.client_config(self.serving_ids() if ids is None else ids,
                                              **{"socket.connection.setup.timeout.ms": 3000}))

    def metadata(self, via: int | None = None, topic: str | None = None, timeout_s: float = 5.0):
        """A Metadata response from broker ``via`` (default: the first serving broker).

        A fresh client bootstrapped from that broker alone, so the request cannot go to a
        stopped or dead broker the client learned about earlier."""
        if via is None:
            serving = self.serving_ids()
            if not serving:
                raise HarnessError("no broker is serving")
            via = serving[0]
        return self.admin([via]).list_topics(topic, timeout=timeout_s)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Every serving broker answers /readyz and lists every serving broker in Metadata."""
        timeout_s = self.ready_timeout_s if timeout_s is None else timeout_s

        def probe():
            want = set(self.serving_ids())
            for i in want:
                if not self.readyz(i):
                    return f"broker {i} not ready"
                listed = set(self.metadata(via=i, timeout_s=2.0).brokers)
                if not want <= listed:
                    return None
            return True

        try:
            wait_until(lambda: probe() is True, "every broker ready and listed in Metadata", timeout_s, 0.2)
        except HarnessError as e:
            raise HarnessError(f"{e}\n{self.failure_report(25)}") from None
        self.assert_no_crash()

    def partitions(self, topic: str, via: int | None = None) -> dict[int, object]:
        """Partition metadata (leader, replicas, isrs, error) of ``topic``, by partition id."""
        last = None

        def probe():
            nonlocal last
            t = self.metadata(via=via, topic=topic).topics.get(topic)
            last = t.error if t else "absent"
            return dict(t.partitions) if t is not None and t.error is None else None

        try:  # brokers apply metadata changes at slightly different times
            return wait_until(probe, f"Metadata of {topic}", 10.0)
        except HarnessError:
            raise HarnessError(f"Metadata of {topic}: {last}") from None

    def leader_of(self, topic: str, partition: int, via: int | None = None) -> int:
        """The leader Metadata names for a partition (-1 if none)."""
        return self.partitions(topic, via)[partition].leader

    def wait_leader(self, topic: str, partition: int, *, not_in: Iterable[int] = (), timeout_s: float = 30.0) -> int:
        """Wait until Metadata names a leader of the partition that is not in ``not_in``."""
        excluded = set(not_in)

        def probe():
            leader = self.leader_of(topic, partition)
            return leader if leader >= 0 and leader not in excluded else None

        return wait_until(probe, f"a leader of {topic}-{partition} other than {sorted(excluded)}", timeout_s)

    def wait_leaders_agree(self, topic: str, *, not_in: Iterable[int] = (), timeout_s: float = 30.0) -> dict[int, int]:
        """Wait until every serving broker's Metadata names the same leader for each
        partition of ``topic``, none of them in ``not_in``; returns {partition: leader}."""
        excluded = set(not_in)
        last: dict = {}

        def probe():
            nonlocal last
            views = {via: {p.id: p.leader for p in self.partitions(topic, via).values()} for via in self.serving_ids()}
            last = views
            first = next(iter(views.values()))
            if all(v == first for v in views.values()) and all(l >= 0 and l not in excluded for l in first.values()):
                return first
            return None

        try:
            return wait_until(probe, f"every broker to name the same leaders of {topic} (not {sorted(excluded)})",
                              timeout_s, 0.2)
        except HarnessError as e:
            raise HarnessError(f"{e}\nleaders by broker: {last}") from None

    def create_topic(self, name: str, partitions: int = 3, rf: int = 3, *, config: dict[str, str] | None = None,
                     assignment: list[list[int]] | None = None, timeout_s: float = 30.0) -> None:
        """CreateTopics, then wait until every partition has a leader and a full ISR."""
        if assignment is not None:
            partitions, rf = len(assignment), len(assignment[0])
            # librdkafka wants the partition count with an assignment (and RF -1)
            topic = NewTopic(name, num_partitions=partitions, replication_factor=-1, replica_assignment=assignment,
                             config=config or {})
        else:
            topic = NewTopic(name, partitions, rf, config=config or {})
        try:
            admin = self.admin()  # referenced until the futures resolve
            admin.create_topics([topic], operation_timeout=timeout_s)[name].result(timeout=timeout_s)
        except KafkaException as e:
            raise HarnessError(f"CreateTopics {name} (partitions {partitions}, RF {rf}, config {config}, "
                               f"assignment {assignment}) failed: {e}") from None
        self.wait_fully_replicated([name], timeout_s=timeout_s, status=False)
        got = self.partitions(name)
        if len(got) != partitions or any(len(p.replicas) != rf for p in got.values()):
            raise HarnessError(f"{name} created with {[(p.id, p.replicas) for p in got.values()]}, "
                               f"asked for {partitions} partitions of RF {rf}")

    def elect_preferred_leaders(self, topic: str, partitions: Iterable[int], timeout_s: float = 30.0) -> None:
        """ElectLeaders (preferred) for ``partitions`` of ``topic``; waits until every
        serving broker names each partition's first replica as its leader. A partition
        whose preferred replica already leads (ELECTION_NOT_NEEDED) is fine."""
        from confluent_kafka import ElectionType, TopicPartition

        partitions = list(partitions)
        admin = self.admin()
        try:
            # no timeout keywords: confluent-kafka 2.16's binding rejects them (SystemError)
            result = admin.elect_leaders(ElectionType.PREFERRED,
                                         [TopicPartition(topic, p) for p in partitions]).result(timeout_s)
        except KafkaException as e:
            raise HarnessError(f"ElectLeaders (preferred) of {topic} {partitions} failed: {e}") from None
        errors = {tp.partition: str(err) for tp, err in result.items()
                  if err is not None and "ELECTION_NOT_NEEDED" not in str(err) and "not needed" not in str(err).lower()}
        if errors:
            raise HarnessError(f"ElectLeaders (preferred) of {topic}: {errors}")
        preferred = {p: self.partitions(topic)[p].replicas[0] for p in partitions}
        leaders = self.wait_leaders_agree(topic, timeout_s=timeout_s)
        wait_until(lambda: all(self.wait_leaders_agree(topic, timeout_s=timeout_s)[p] == preferred[p]
                               for p in partitions),
                   f"the preferred replicas {preferred} to lead {topic} (leaders were {leaders})", timeout_s)

    def alter_topic_config(self, topic: str, settings: dict[str, str], timeout_s: float = 30.0) -> None:
        """IncrementalAlterConfigs (SET) of topic settings."""
        res = ConfigResource("topic", topic, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in settings.items()])
        try:
            admin = self.admin()
            for f in admin.incremental_alter_configs([res]).values():
                f.result(timeout=timeout_s)
        except KafkaException as e:
            raise HarnessError(f"IncrementalAlterConfigs {topic} {settings} failed: {e}") from None

    def replication_problems(self, topics: Iterable[str], status: bool = True) -> list[str]:
        """Why the cluster is not fully replicated. Asks every serving broker (a broker
        that was just continued or restarted can answer from a stale metadata cache):
        partitions of ``topics`` without a leader, with ISR != replicas, or whose leader
        the brokers disagree on (Metadata); and serving brokers whose /v1/status counts
        under-replicated partitions (all topics, internal ones too)."""
        problems = []
        leaders: dict[tuple[str, int], dict[int, int]] = {}
        for via in self.serving_ids():
            md = self.metadata(via=via)
            for name in topics:
                t = md.topics.get(name)
                if t is None or t.error is not None:
                    problems.append(f"broker {via}: {name}: {t.error if t else 'absent from Metadata'}")
                    continue
                for p in t.partitions.values():
                    leaders.setdefault((name, p.id), {})[via] = p.leader
                    if p.error is not None or p.leader < 0 or sorted(p.isrs) != sorted(p.replicas):
                        problems.append(f"broker {via}: {name}-{p.id}: leader {p.leader}, replicas {p.replicas}, "
                                        f"isr {p.isrs}" + (f", {p.error}" if p.error else ""))
        for (name, pid), views in sorted(leaders.items()):
            if len(set(views.values())) > 1:
                problems.append(f"{name}-{pid}: brokers disagree on the leader: {views}")
        # /v1/status counts every partition a broker leads (the internal offsets
        # topic too), so it can only read 0 while every broker is up.
        all_up = len(self.serving_ids()) == len(self.nodes)
        if status and self.clustered and self.has_admin_http and all_up:
            for i in self.serving_ids():
                n = self.under_replicated(i)
                if n:
                    problems.append(f"broker {i}: /v1/status reports {n} under-replicated")
        return problems

    def wait_fully_replicated(self, topics: Iterable[str], timeout_s: float = 60.0, status: bool = True) -> float:
        """Wait until ``replication_problems`` is empty; returns how long it took."""
        topics = list(topics)
        t0 = time.monotonic()
        last: list[str] = []

        def probe():
            nonlocal last
            last = self.replication_problems(topics, status=status)
            return not last

        try:
            wait_until(probe, f"full replication of {topics}", timeout_s, 0.2)
        except Missing:
            raise
        except HarnessError as e:
            raise HarnessError(f"{e}\nstill: {last[:10]}") from None
        return time.monotonic() - t0

    # ---- Apache Kafka's tools ---------------------------------------------------------------

    def kafka_tool(self, cls: str, *args: str, timeout_s: float = 60.0) -> tuple[int, str]:
        """Run an Apache Kafka tool class (``e2e/tools/kafka.sh tool``); (exit status, output)."""
        env = dict(os.environ, KAFKA_TOOL_HEAP_OPTS="-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        try:
            r = subprocess.run([str(KAFKA_SH), "tool", cls, *args], capture_output=True, text=True,
                               timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"{cls} {' '.join(args)} ran over {timeout_s:.0f}s: {e.stdout!r} {e.stderr!r}") from None
        return r.returncode, (r.stdout + r.stderr)

    def reassign(self, plan: dict[tuple[str, int], list[int]], timeout_s: float = 90.0) -> float:
        """``kafka-reassign-partitions --execute`` of ``plan`` ({(topic, partition): replicas}),
        then ``--verify`` until every partition's move is complete. Returns the seconds taken."""
        doc = {"version": 1, "partitions": [
            {"topic": t, "partition": p, "replicas": r} for (t, p), r in sorted(plan.items())]}
        path = self.workdir / f"reassign-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(doc))
        t0 = time.monotonic()
        bootstrap = self.bootstrap(self.serving_ids())
        code, out = self.kafka_tool(REASSIGN_TOOL, "--bootstrap-server", bootstrap,
                                    "--reassignment-json-file", str(path), "--execute")
        if code != 0 or "Successfully started partition reassignment" not in out:
            raise HarnessError(f"kafka-reassign-partitions --execute failed (status {code}); "
                               f"AlterPartitionReassignments missing or broken?\n{out[-3000:]}")
        last = ""

        def verified():
            nonlocal last
            code, out = self.kafka_tool(REASSIGN_TOOL, "--bootstrap-server", self.bootstrap(self.serving_ids()),
                                        "--reassignment-json-file", str(path), "--verify", "--preserve-throttles")
            last = out
            done = sum(f"Reassignment of partition {t}-{p} is completed" in out for (t, p) in plan)
            return code == 0 and done == len(plan)

        try:
            wait_until(verified, f"kafka-reassign-partitions --verify of {len(plan)} partition(s)", timeout_s, 1.0)
        except HarnessError as e:
            raise HarnessError(f"{e}\nlast --verify output:\n{last[-3000:]}") from None
        return time.monotonic() - t0
