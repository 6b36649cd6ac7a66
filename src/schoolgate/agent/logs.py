"""JSON-lines logging for the agent.

Log events carry record ids, sequence numbers, counts and provider codes —
never pupils' data, record payloads, tokens, secrets or keys. Callers pass
only such fields; `event()` refuses a few field names that would smell of
personal data or secrets, as a guard against a careless future change.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            data.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            data["error_type"] = record.exc_info[0].__name__
            data["error"] = str(record.exc_info[1])[:500]
        return json.dumps(data, ensure_ascii=False, default=str)


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False


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
