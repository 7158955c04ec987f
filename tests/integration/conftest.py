"""Integration fixtures: real relays in real subprocesses (see ``support.relays``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, started

__all__ = ["RelayProcess", "start_relay"]


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    """Start any number of relays (``relay_factory(config=..., name=...)``); all stopped after."""
    started: list[RelayProcess] = []

    def factory(config: dict[str, Any] | None = None, name: str | None = None) -> RelayProcess:
        relay = start_relay(tmp_path, config, name or f"relay{len(started)}")
        started.append(relay)
        return relay

    yield factory
    for relay in started:
        relay.stop()


@pytest.fixture
def relay_process(relay_factory: Callable[..., RelayProcess]) -> RelayProcess:
    """One relay with the default configuration."""
    return relay_factory()


@pytest.fixture
def stations(tmp_path: Path) -> Iterator[Callable[[str], StationProcess]]:
    """Start running stations by name (``stations("washington")``); all stopped after."""
    with contextlib.ExitStack() as stack:
        yield lambda name: stack.enter_context(started(tmp_path, name))[0]
