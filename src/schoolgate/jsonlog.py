"""JSON-lines logging shared by the agent and the simulator (one event per line on stderr).

A line carries `ts` (UTC, milliseconds), `level`, `event` and the caller's fields (passed as
`extra={"fields": {...}}`). What the fields may contain is the caller's rule: ids, counts and codes,
never personal data, payloads, tokens or keys (152-ФЗ); the agent's `logs.event` enforces that.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def __init__(self, *, tracebacks: bool = False) -> None:
        super().__init__()
        # A traceback can quote local values; only processes that never hold pupils' data may print one.
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            data["error_type"] = record.exc_info[0].__name__
            data["error"] = str(record.exc_info[1])[:500]
            if self.tracebacks:
                data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler setup() installed, so a second setup() replaces it instead of doubling lines."""


def setup(logger_name: str, level: str = "info", *, tracebacks: bool = False) -> logging.Logger:
    logger = logging.getLogger(logger_name)
    handler = _JsonHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(tracebacks=tracebacks))
    logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _JsonHandler)] + [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger
