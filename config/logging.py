"""Structured logs: with LOG_FORMAT=json, one JSON object per line, carrying the ids of the request,
job and step being served (set in context variables by config.middleware and generation.queue.worker).

Context variables follow the request or task through asgiref's threads, like the tenant scope does.
"""
from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

CONTEXT_FIELDS = ("request_id", "job_id", "step_id", "organization_id")

_context: contextvars.ContextVar[dict] = contextvars.ContextVar("log_context", default={})


@contextmanager
def log_context(**fields) -> Iterator[None]:
    """Add these ids to every log line written inside the block (None values are left out)."""
    token = _context.set({**_context.get(), **{key: str(value) for key, value in fields.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict:
    return dict(_context.get())


def record_context(record: logging.LogRecord) -> dict:
    """The ids known for a log record: its context, or for Django's own request lines ("Not Found",
    "Internal Server Error", written after the middleware returned) the request they carry."""
    context = dict(_context.get())
    request_id = getattr(getattr(record, "request", None), "request_id", None)
    if request_id and "request_id" not in context:
        context["request_id"] = request_id
    return context


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the known context ids, and exc_info as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = record_context(record)
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None) or context.get(name)
            if value is not None:
                entry[name] = str(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The readable format of the embedded mode, with the context ids in brackets when known."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        context = record_context(record)
        ids = " ".join(f"{name}={context[name]}" for name in CONTEXT_FIELDS if name in context)
        record.context = f" [{ids}]" if ids else ""
        return super().format(record)
