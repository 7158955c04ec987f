"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import fast_kdf
from support.postgres import PostgresCluster

# Every keystore and password hash a test creates in this process is light (support/fast_kdf.py).
fast_kdf.install()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole run, started on first use, always stopped."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print every figure the adversarial tests recorded (support.figures), one line each."""
    from support.figures import summary_lines

    lines = summary_lines()
    if lines:
        terminalreporter.section("figures held by the adversarial tests")
        for line in lines:
            terminalreporter.write_line(line)
