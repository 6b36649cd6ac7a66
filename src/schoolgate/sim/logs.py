"""Structured (JSON lines) logging. Log record ids, batch ids and client ids, never personal data."""

from __future__ import annotations

import logging
from typing import Any

from schoolgate import jsonlog

LOGGER_NAME = "schoolgate.sim"


def setup(level: str = "info") -> logging.Logger:
    return jsonlog.setup(LOGGER_NAME, level, tracebacks=True)


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    logging.getLogger(LOGGER_NAME).log(level, event, extra={"fields": fields})
