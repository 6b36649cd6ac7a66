"""The event loop of schoolgate's asyncio programs (agent, simulator, acceptance load): uvloop when installed
(a dependency on Linux), asyncio's own otherwise. On a two-core school server the loop's own cost is a real
share of each request; the load generator shares the machine it measures, so it should cost little too."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
