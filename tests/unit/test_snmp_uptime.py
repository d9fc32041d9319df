"""sysUpTime: a restart told from the TimeTicks wrap (RFC 2578: hundredths of a second modulo
2**32). Values by hand: a reading 1 000 cs before the wrap, the next one 60 s (6 000 cs)
later lands at 5 000 cs; the slack is 3 000 cs + 1 % of 6 000 = 3 060 cs."""

from __future__ import annotations

from collector.snmp.state import uptime_verdict

BEFORE = 2**32 - 1000


def test_a_wrap_lands_where_the_wall_clock_says_within_the_slack() -> None:
    assert uptime_verdict(BEFORE, 0, 5000, 60_000) == "wrap"
    assert uptime_verdict(BEFORE, 0, 5000 + 3060, 60_000) == "wrap"
    assert uptime_verdict(BEFORE, 0, 5000 + 3061, 60_000) == "restart"
    assert uptime_verdict(BEFORE, 0, 5000 - 3060, 60_000) == "wrap"
    assert uptime_verdict(BEFORE, 0, 5000 - 3061, 60_000) == "restart"


def test_backwards_far_from_the_wrap_is_a_restart() -> None:
    # 100 days of uptime, then 20 s: nowhere near 2**32.
    assert uptime_verdict(100 * 8_640_000, 0, 2000, 60_000) == "restart"
    # Just one centisecond back.
    assert uptime_verdict(500_000, 0, 499_999, 60_000) == "restart"


def test_forwards_or_unknown_is_neither() -> None:
    assert uptime_verdict(500_000, 0, 500_000, 60_000) is None
    assert uptime_verdict(500_000, 0, 506_000, 60_000) is None
    assert uptime_verdict(None, None, 5, 60_000) is None
    assert uptime_verdict(500_000, 0, None, 60_000) is None
