"""Structured logs: one event a line, as JSON or as plain text."""

from __future__ import annotations

import ast
import json
import logging
import re
import sys
import time
from typing import Any, Literal

from ground.settings import Section


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"


# key=value, the value bare (up to a space) or quoted as %r quotes it: 'a b', "it's".
_PAIR = re.compile(r"""(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S*)""")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+")
_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc"})


def event_fields(msg: str) -> dict[str, Any]:
    """The key=value pairs of an `event=name key=value ...` message as fields: quoted values
    unquoted ('a b' -> a b), whole numbers and decimals as numbers, anything else as text.
    Nothing for a message that does not start with `event=`."""
    if not msg.startswith("event="):
        return {}
    out: dict[str, Any] = {}
    for key, raw in _PAIR.findall(msg):
        value: Any = raw
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw[1:-1]
        elif _INT.fullmatch(raw):
            value = int(raw)
        elif _FLOAT.fullmatch(raw):
            value = float(raw)
        if key not in _RESERVED:  # the record's own fields are never overwritten
            out.setdefault(key, value)
    return out


class JsonFormatter(logging.Formatter):
    """A JSON object per record: ts, level, logger, msg (and exc when there is one); for an
    `event=name key=value ...` message also `event` and each key as a field of its own, so a
    log store can filter on them (msg stays the whole, readable line)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": msg,
        }
        out.update(event_fields(msg))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for the process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The embedded broker logs every packet at INFO; keep it to warnings.
    # httpx logs request URLs at INFO, and a receiver's URL may hold a token.
    for noisy in ("amqtt", "transitions", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
