"""The embedded broker's late-PUBACK log: one warning line instead of amqtt's traceback."""

from __future__ import annotations

import logging
import sys

import pytest

from netqos.service import LatePubackFilter


def _failed_task_record(exc: BaseException) -> logging.LogRecord:
    # What amqtt's broadcast loop logs: logger.exception("Task failed and will be skipped: ...")
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord(
        "amqtt.broker", logging.ERROR, __file__, 1, "Task failed and will be skipped", (), info
    )


def test_a_late_puback_becomes_one_warning_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    record = _failed_task_record(TimeoutError("Timeout waiting for PUBACK for packet ID 7"))
    assert LatePubackFilter().filter(record) is False
    (line,) = [r for r in caplog.records if r.name == "netqos.service"]
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "event=embedded_broker_puback_late" in line.getMessage() and "packet ID 7" in line.getMessage()


@pytest.mark.parametrize(
    "exc",
    [TimeoutError("keep-alive timed out"), RuntimeError("Timeout waiting for PUBACK for packet ID 7")],
)
def test_any_other_failure_keeps_its_traceback(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert LatePubackFilter().filter(_failed_task_record(exc)) is True
    assert not [r for r in caplog.records if r.name == "netqos.service"]
