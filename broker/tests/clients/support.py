"""Helpers shared by the Python client suites (no client library imported here)."""

from __future__ import annotations

import socket
import struct
import time
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")

#: Upper bound for any single client operation (admin call, flush, read-back).
OP_TIMEOUT_S = 30.0


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as a list of (host, port)."""
    out = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def probe_api_versions(host: str, port: int, timeout_s: float = 10.0) -> None:
    """Send ApiVersions v0 and check the broker answers it without error.

    Hand-rolled on purpose: it is only a liveness probe run before any client library
    is involved, so a broker that accepts connections but never answers fails every test
    at once instead of each test timing out on its own.
    """
    client_id = b"skiff-probe"
    correlation_id = 0x5C1FF
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(struct.pack(">i", len(body)) + body)
        header = _recv_exactly(sock, 4)
        (size,) = struct.unpack(">i", header)
        response = _recv_exactly(sock, size)
    if len(response) < 6:
        raise ConnectionError(f"ApiVersions response of {len(response)} bytes is too short")
    got_id, error_code = struct.unpack(">ih", response[:6])
    if got_id != correlation_id:
        raise ConnectionError(f"ApiVersions answered with correlation id {got_id}, sent {correlation_id}")
    if error_code != 0:
        raise ConnectionError(f"ApiVersions v0 returned error code {error_code}")


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return data


def wait_until(probe: Callable[[], T | None], what: str, timeout_s: float = OP_TIMEOUT_S) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - the last one is reported on timeout
            last_error = e
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))
