"""JSON-lines logging for the agent.

Log events carry record ids, sequence numbers, counts and provider codes —
never pupils' data, record payloads, tokens, secrets or keys. Callers pass
only such fields; `event()` refuses a few field names that would smell of
personal data or secrets, as a guard against a careless future change.
"""

from __future__ import annotations

import logging
from typing import Any

from schoolgate import jsonlog

LOGGER = logging.getLogger("schoolgate.agent")
_FORBIDDEN = {
    "payload",
    "record",
    "records",
    "token",
    "access_token",
    "secret",
    "password",
    "name",
    "grade",
    "comment",
    "authorization",
    "body",
}


def setup(level: str = "info") -> None:
    # No tracebacks: a frame's locals may hold a record payload.
    jsonlog.setup(LOGGER.name, level)


def event(level: int, name: str, **fields: Any) -> None:
    if not LOGGER.isEnabledFor(level):
        return
    bad = _FORBIDDEN.intersection(fields)
    if bad:
        raise ValueError(f"refusing to log fields {sorted(bad)}: personal data or secrets never go to logs")
    LOGGER.log(level, name, extra={"fields": fields})


def info(name: str, **fields: Any) -> None:
    event(logging.INFO, name, **fields)


def warning(name: str, **fields: Any) -> None:
    event(logging.WARNING, name, **fields)


def error(name: str, **fields: Any) -> None:
    event(logging.ERROR, name, **fields)


def debug(name: str, **fields: Any) -> None:
    event(logging.DEBUG, name, **fields)
