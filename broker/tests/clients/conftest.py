"""Fixtures shared by the Python client suites: where the broker is, unique names."""

from __future__ import annotations

import os
import re
import uuid
from typing import Callable

import pytest

from support import bootstrap_addresses, probe_api_versions


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """The broker under test (``SKIFF_BOOTSTRAP``), checked once to answer ApiVersions."""
    value = os.environ.get("SKIFF_BOOTSTRAP")
    if not value:
        pytest.fail("SKIFF_BOOTSTRAP is not set (e.g. 127.0.0.1:9092)", pytrace=False)
    errors = []
    for host, port in bootstrap_addresses(value):
        try:
            probe_api_versions(host, port)
            return value
        except OSError as e:
            errors.append(f"{host}:{port}: {e}")
    pytest.fail(f"no bootstrap broker answers ApiVersions: {'; '.join(errors)}", pytrace=False)


@pytest.fixture(scope="session")
def replication_factor() -> int:
    """Replication factor for the suites' topics (``SKIFF_TEST_REPLICATION_FACTOR``, default 1)."""
    return int(os.environ.get("SKIFF_TEST_REPLICATION_FACTOR", "1"))


@pytest.fixture(scope="session")
def run_id() -> str:
    """Distinguishes this run's topics, groups and message values from any earlier run."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def unique_name(request: pytest.FixtureRequest, run_id: str) -> Callable[[str], str]:
    """``unique_name("topic")`` -> ``skiff-<module>-<test>-topic-<run>``; legal as a topic name."""

    def make(kind: str) -> str:
        module = request.module.__name__.removeprefix("test_")
        test = request.node.name.removeprefix("test_")
        raw = f"skiff-{module}-{test}-{kind}-{run_id}"
        # Topic names allow [a-zA-Z0-9._-] and at most 249 characters.
        return re.sub(r"[^a-zA-Z0-9._-]", "-", raw)[-200:]

    return make
