"""Brokers under test: start one fresh, measure how it starts and what it costs, stop it.

Owns every broker process the benchmark starts. `stop_all()` is the safety net the
orchestrator calls in `finally`, so no broker outlives a run, failed or not. Knows nothing
about loads or scenarios.

Start-to-serving is the time from the broker process's start to the first Metadata
response that lists a broker, polled every 5 ms with a hand-built request (the same
probe for both brokers). For Skiff the clock starts just before fork/exec; for Kafka it
starts at the JVM's start time from /proc/PID/stat (10 ms ticks), so Kafka's separate
`kafka-storage format` JVM, which runs before the broker, is not counted.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "e2e" / "tools" / "kafka.sh"
SKIFF_BIN = ROOT / "target" / "release" / "skiff-broker"

POLL_S = 0.005
SERVE_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BrokerError(RuntimeError):
    """A broker did not start, serve or stop as expected."""


@dataclass(frozen=True)
class Target:
    """One broker configuration a scenario measures: a column of its table."""

    label: str  # as shown in tables: "Kafka", "Skiff (fsync)", ...
    kind: str  # "kafka" | "skiff"
    settings: tuple[tuple[str, str], ...] = ()  # Kafka config names, applied to every node
    nodes: int = 1

    @property
    def is_skiff(self) -> bool:
        return self.kind == "skiff"


# ---------------------------------------------------------------------------------------
# /proc readings


def proc_status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BrokerError(f"/proc/{pid}/status has no {key}")


def proc_stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 is index 0)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of PID so far."""
    f = proc_stat_fields(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK


def start_boottime_s(pid: int) -> float:
    """When PID started, on the CLOCK_BOOTTIME scale (10 ms resolution)."""
    return int(proc_stat_fields(pid)[19]) / CLK_TCK


def alive(pid: int) -> bool:
    try:
        return proc_stat_fields(pid)[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


# ---------------------------------------------------------------------------------------
# The probe


def _request(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    client_id = b"skiff-bench"
    msg = struct.pack(">hhih", api_key, version, 1, len(client_id)) + client_id + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))
    data = sock.recv(size, socket.MSG_WAITALL)
    if len(data) != size:
        raise ConnectionError("short response")
    return data


def serving(port: int, brokers_expected: int = 1) -> bool:
    """True once the broker answers Metadata v1 (no topics) listing enough brokers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            resp = _request(s, 3, 1, struct.pack(">i", 0))
        (brokers,) = struct.unpack_from(">i", resp, 4)
        return brokers >= brokers_expected
    except (OSError, struct.error):
        return False


def listens(pid: int, port: int) -> bool:
    """True when PID itself holds the socket listening on 127.0.0.1:PORT.

    A probe answered on the port is not enough: on a shared machine another broker can
    take a port between our check that it is free and our broker's bind."""
    suffix = f":{port:04X}"
    inodes = set()
    try:
        # The JVM binds 127.0.0.1 through an IPv6 socket (::ffff:127.0.0.1): look at both.
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[1].endswith(suffix) and f[3] == "0A":  # LISTEN
                    inodes.add(f"socket:[{f[9]}]")
        fds = Path(f"/proc/{pid}/fd")
        return any(os.readlink(fd) in inodes for fd in fds.iterdir())
    except OSError:
        return False


def free_port_block(n: int) -> int:
    """A base port such that base..base+n-1 are free on 127.0.0.1 right now, below the
    kernel's ephemeral range (where outgoing connections would take ports at random)."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    for _ in range(200):
        base = random.randrange(10000, max(10001, ephemeral_low - n))
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise BrokerError(f"no block of {n} free ports found")


# ---------------------------------------------------------------------------------------
# Running brokers


@dataclass
class Running:
    """A started broker (one or more nodes) and what its start cost."""

    target: Target
    bootstrap: str
    pids: list[int]
    workdir: Path
    start_to_serving_ms: float
    idle_rss_kib: int = 0
    _stop: object = None  # callable stopping every node
    stop_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def rss_kib(self) -> int:
        return sum(proc_status_kib(p, "VmRSS") for p in self.pids)

    def hwm_kib(self) -> int:
        """Peak RSS since start (VmHWM), summed over nodes."""
        return sum(proc_status_kib(p, "VmHWM") for p in self.pids)

    def gone(self) -> str | None:
        """Why the broker is not running any more, or None while it is."""
        dead = [p for p in self.pids if not alive(p)]
        if not dead:
            return None
        log = self.workdir / ("skiff.log" if self.target.kind == "skiff" else "logs/server.log")
        return f"{self.target.label}: process {dead} exited during the load; its log ends: {_tail(log)}"

    def check_alive(self) -> None:
        if (why := self.gone()) is not None:
            raise BrokerError(why)

    def stop(self) -> None:
        if self._stop is None:
            return
        stop, self._stop = self._stop, None
        t0 = time.monotonic()
        try:
            stop()
        finally:
            self.stop_ms = (time.monotonic() - t0) * 1e3
            _RUNNING.discard(self)

    def __hash__(self) -> int:
        return id(self)


_RUNNING: set[Running] = set()


def stop_all() -> None:
    """Stop every broker still running (the orchestrator's `finally`)."""
    for r in list(_RUNNING):
        try:
            r.stop()
        except Exception as e:  # keep stopping the others
            print(f"bench: stopping {r.target.label} failed: {e}")


def start(target: Target, workdir: Path, idle_settle_s: float) -> Running:
    """Start `target` in a fresh `workdir`, wait until it serves, sample its idle RSS."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    if target.nodes not in (1, 3):
        raise BrokerError(f"{target.nodes} nodes: kafka.sh starts 1 or 3")
    if target.kind == "kafka":
        running = _start_kafka(target, workdir)
    elif target.nodes == 1:
        running = _start_skiff(target, workdir)
    else:
        # Slot for the 3-broker scenarios: three skiff-broker processes with distinct
        # --node-id, ports and data dirs, once replication and the metadata quorum land
        # (their flags are not settled yet). Return a Running with all three pids.
        raise BrokerError("3-node Skiff is not implemented in the bench yet (replication has not landed)")
    time.sleep(idle_settle_s)
    running.check_alive()
    running.idle_rss_kib = running.rss_kib()
    return running


def _start_skiff(target: Target, workdir: Path) -> Running:
    if not SKIFF_BIN.exists():
        raise BrokerError(f"{SKIFF_BIN} missing (cargo build --release -p skiff-broker)")
    base = free_port_block(3)
    cmd = [str(SKIFF_BIN), "--data-dir", str(workdir / "data"),
           "--listen", f"127.0.0.1:{base}", "--admin-listen", f"127.0.0.1:{base + 1}",
           "--controller-listen", f"127.0.0.1:{base + 2}"]
    for k, v in target.settings:
        cmd += ["--set", f"{k}={v}"]
    log = open(workdir / "skiff.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()

    def stop() -> None:
        _terminate(proc.pid, lambda: proc.poll() is not None)

    running = Running(target, f"127.0.0.1:{base}", [proc.pid], workdir, 0.0, _stop=stop)
    _RUNNING.add(running)
    deadline = t0 + SERVE_TIMEOUT_S
    while not (serving(base) and listens(proc.pid, base)):
        if proc.poll() is not None:
            running.stop()
            raise BrokerError(f"skiff-broker exited with {proc.returncode} before serving: {_tail(workdir / 'skiff.log')}")
        if time.monotonic() > deadline:
            running.stop()
            raise BrokerError(f"skiff-broker did not serve within {SERVE_TIMEOUT_S} s")
        time.sleep(POLL_S)
    running.start_to_serving_ms = (time.monotonic() - t0) * 1e3
    return running


def _start_kafka(target: Target, workdir: Path) -> Running:
    """`kafka.sh start-single` (ports base, base+1) or `start-cluster` (base..base+5)."""
    n = target.nodes
    base = free_port_block(2 * n)
    cmd = [str(KAFKA_SH), "start-single" if n == 1 else "start-cluster", str(workdir), str(base),
           *(f"{k}={v}" for k, v in target.settings)]
    log = open(workdir.parent / f"{workdir.name}.kafka-sh.log", "wb")
    script = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                              start_new_session=True)
    log.close()
    node_dirs = [workdir] if n == 1 else [workdir / f"node-{i}" for i in range(1, n + 1)]
    ports = [base + i for i in range(n)]

    def stop() -> None:
        _stop_kafka(workdir, node_dirs, script)

    running = Running(target, ",".join(f"127.0.0.1:{p}" for p in ports), [], workdir, 0.0, _stop=stop)
    _RUNNING.add(running)
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    try:
        # kafka.sh formats the storage (one JVM per node), then launches the broker JVMs
        # and writes their pids; the clock starts at the first broker JVM's start time.
        for d in node_dirs:
            while not (d / "kafka.pid").exists() or not (d / "kafka.pid").read_text().strip():
                _check_script(script, workdir, deadline)
                time.sleep(POLL_S)
            running.pids.append(int((d / "kafka.pid").read_text()))
        started = min(start_boottime_s(p) for p in running.pids)
        while not all(serving(p, n) and listens(pid, p) for p, pid in zip(ports, running.pids)):
            for pid, d in zip(running.pids, node_dirs):
                if not alive(pid):
                    raise BrokerError(f"Kafka exited before serving: {_tail(d / 'logs' / 'server.log')}")
            # Once the JVMs run, the JVMs decide: kafka.sh's own liveness check can lose a
            # race with the JVM's exec and give up on a broker that then serves.
            _check_script(script, workdir, deadline, jvm_alive=True)
            time.sleep(POLL_S)
        running.start_to_serving_ms = (time.clock_gettime(time.CLOCK_BOOTTIME) - started) * 1e3
        # kafka.sh itself returns once it has seen the server's "started" line.
        script.wait(timeout=max(1.0, deadline - time.monotonic()))
        if script.returncode != 0:
            running.notes.append(f"kafka.sh {cmd[1]} gave up although the JVM went on to serve: "
                                 + _tail(workdir.parent / f"{workdir.name}.kafka-sh.log", 1))
    except BaseException:
        running.stop()
        raise
    return running


def _check_script(script: subprocess.Popen, workdir: Path, deadline: float, jvm_alive: bool = False) -> None:
    rc = script.poll()
    if rc is not None and rc != 0 and not jvm_alive:
        raise BrokerError(f"kafka.sh start-single exited with {rc}: {_tail(workdir.parent / f'{workdir.name}.kafka-sh.log')}")
    if time.monotonic() > deadline:
        raise BrokerError(f"Kafka did not serve within {SERVE_TIMEOUT_S} s")


def _stop_kafka(workdir: Path, node_dirs: list[Path], script: subprocess.Popen) -> None:
    if script.poll() is None:  # still starting: end kafka.sh first (the JVMs have their own sessions)
        _kill_group(script.pid, signal.SIGKILL)
        script.wait(timeout=10)
    pids = []
    for d in node_dirs:
        try:
            pids.append(int((d / "kafka.pid").read_text()))
        except (OSError, ValueError):
            pass
    try:
        subprocess.run([str(KAFKA_SH), "stop", str(workdir)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=STOP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pass
    for pid in pids:  # kafka.sh stop is bounded, but make sure
        if alive(pid):
            _terminate(pid, lambda pid=pid: not alive(pid))


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _terminate(pid: int, gone) -> None:
    """SIGTERM to the process, bounded wait, then SIGKILL to its whole process group."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not gone():
        _kill_group(pid, signal.SIGKILL)
        for _ in range(100):
            if gone():
                break
            time.sleep(0.05)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = _ANSI.sub("", path.read_text(errors="replace")).strip().splitlines()
    except OSError:
        return f"({path} unreadable)"
    return " | ".join(line.strip()[:200] for line in text[-lines:])
