"""Running the event loop of a station or relay process.

uvloop (libuv) roughly halves the per-hop cost of asyncio networking, and a message makes
six hops between three processes, so the processes use it where it is installed. The
standard loop is the fallback: behaviour is the same, only slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency on Linux
        return asyncio.run(main)
    return uvloop.run(main)
