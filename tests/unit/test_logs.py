"""ground.logs: JSON logs carry an event's key=value pairs as fields of their own."""

from __future__ import annotations

import json
import logging
import sys

from ground.logs import JsonFormatter, event_fields


def _json_line(msg: str, *args: object, exc: bool = False) -> dict[str, object]:
    record = logging.LogRecord("netqos.test", logging.WARNING, __file__, 1, msg, args, None)
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            record.exc_info = sys.exc_info()
    out = json.loads(JsonFormatter().format(record))
    assert isinstance(out, dict)
    return out


def test_event_pairs_become_fields_and_msg_stays_the_whole_line() -> None:
    # As outbox.py logs a failed delivery: %d, %.1f and %r values side by side.
    line = _json_line(
        "event=notification_failed receiver=%s attempts=%d retry_in_s=%.1f error=%r",
        "noc-mail",
        3,
        2.5,
        "Connection refused: it's down",
    )
    assert line["msg"] == (
        "event=notification_failed receiver=noc-mail attempts=3 retry_in_s=2.5"
        ' error="Connection refused: it\'s down"'
    )
    assert line["event"] == "notification_failed"
    assert line["receiver"] == "noc-mail"
    assert line["attempts"] == 3
    assert line["retry_in_s"] == 2.5
    assert line["error"] == "Connection refused: it's down"
    assert line["level"] == "warning" and line["logger"] == "netqos.test"
    fields = {"event", "receiver", "attempts", "retry_in_s", "error"}
    assert set(line) == {"ts", "level", "logger", "msg", *fields}


def test_values_keep_their_text_unless_wholly_a_number() -> None:
    fields = event_fields("event=x topic='a b=c' id=-7 z=0 lead=007 v=1.5.2 host=127.0.0.1 empty= dash=-")
    assert fields == {
        "event": "x",
        "topic": "a b=c",  # the = inside quotes is no new pair
        "id": -7,
        "z": 0,
        "lead": "007",  # a leading zero is an identifier, not a number
        "v": "1.5.2",
        "host": "127.0.0.1",
        "empty": "",
        "dash": "-",
    }


def test_a_message_that_is_no_event_adds_nothing() -> None:
    assert event_fields("started in 2.0 s with level=debug") == {}
    line = _json_line("plain words key=value")
    assert set(line) == {"ts", "level", "logger", "msg"}


def test_pairs_never_overwrite_the_records_own_fields() -> None:
    line = _json_line("event=odd level=shouting logger=me msg=hi ts=0 exc=none n=1", exc=True)
    assert line["level"] == "warning" and line["logger"] == "netqos.test"
    assert line["msg"] == "event=odd level=shouting logger=me msg=hi ts=0 exc=none n=1"
    assert isinstance(line["ts"], str) and str(line["ts"]).endswith("Z")
    assert "RuntimeError: boom" in str(line["exc"])
    assert line["event"] == "odd" and line["n"] == 1
