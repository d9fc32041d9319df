"""A recorded SNMP table served by a real net-snmp agent (snmpd ``pass_persist``).

A recording is text in the form ``snmpwalk -On`` prints, one varbind a line::

    .1.3.6.1.2.1.99.1.1.1.4.2 = INTEGER: -1510
    .1.3.6.1.4.1.32473.16.1.1.2.4194304256.3 = STRING: "cust-B"
    .1.3.6.1.2.1.31.1.1.1.6.1 = Counter64: 18446744073709551000

(types: INTEGER, Gauge32, Counter32, Counter64, Timeticks, STRING; ``#`` starts a comment).
``recording_agent(path, subtree)`` gives an ``SnmpdAgent`` (tests/snmpd.py) that answers for
``subtree`` from that file through ``pass_persist``, over v2c and over SNMPv3 authPriv alike:
the agent's own encoder puts each value on the wire with the type the recording names, so a
test sees exactly what a device with that table would send. The file is read again whenever
it changes, so a test rewrites it to delete rows, rename them or clear counters between polls.

Run as a script, this module is the ``pass_persist`` program itself (stdin/stdout protocol of
snmpd.conf(5)); it imports nothing from the project.
"""

from __future__ import annotations

import os
import sys
from bisect import bisect_right
from pathlib import Path
from typing import Any

# recording type -> pass_persist type word (snmpd.conf(5), "pass")
_TYPES = {
    "INTEGER": "integer",
    "Gauge32": "gauge",
    "Counter32": "counter",
    "Counter64": "counter64",
    "Timeticks": "timeticks",
    "STRING": "string",
}
MAX_LINES = 1_000_000


def parse_recording(text: str) -> dict[tuple[int, ...], tuple[str, str]]:
    """OID -> (pass_persist type, value text); raises ValueError naming the bad line."""
    out: dict[tuple[int, ...], tuple[str, str]] = {}
    for n, line in enumerate(text.splitlines()[:MAX_LINES], 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            oid_text, rest = line.split(" = ", 1)
            type_name, value = rest.split(": ", 1)
            oid = tuple(int(x) for x in oid_text.strip(".").split("."))
            kind = _TYPES[type_name]
        except (ValueError, KeyError) as exc:
            raise ValueError(f"recording line {n}: {line!r}: {exc}") from None
        if kind == "string":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
        else:
            int(value)  # must be a number
        out[oid] = (kind, value)
    return out


def _serve(path: Path) -> None:  # pragma: no cover - runs inside snmpd
    stamp: float | None = None
    data: dict[tuple[int, ...], tuple[str, str]] = {}
    keys: list[tuple[int, ...]] = []

    def load() -> None:
        nonlocal stamp, data, keys
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return
        if mtime != stamp:
            data = parse_recording(path.read_text(encoding="utf-8"))
            keys = sorted(data)
            stamp = mtime

    def answer(oid: tuple[int, ...] | None) -> str:
        if oid is None:
            return "NONE\n"
        kind, value = data[oid]
        return "." + ".".join(map(str, oid)) + f"\n{kind}\n{value}\n"

    out = sys.stdout
    for _ in range(10**9):
        cmd = sys.stdin.readline()
        if not cmd:
            return
        cmd = cmd.strip()
        if cmd == "PING":
            out.write("PONG\n")
        elif cmd in ("get", "getnext"):
            load()
            text = sys.stdin.readline().strip().strip(".")
            oid = tuple(int(x) for x in text.split(".")) if text else ()
            if cmd == "get":
                out.write(answer(oid if oid in data else None))
            else:
                i = bisect_right(keys, oid)
                out.write(answer(keys[i] if i < len(keys) else None))
        elif cmd == "set":
            sys.stdin.readline()
            sys.stdin.readline()
            out.write("not-writable\n")
        else:
            out.write("NONE\n")
        out.flush()


def recording_agent(
    recording: Path, subtrees: list[str], priority: int | None = None, **agent_kwargs: Any
) -> Any:
    """An SnmpdAgent (not started) serving `subtrees` (dotted OIDs) from `recording`; with
    `priority` (lower wins, snmpd.conf(5) `pass_persist -p`) over what snmpd serves itself
    there (HOST-RESOURCES-MIB of the test machine)."""
    from tests.snmpd import SnmpdAgent

    wrapper = recording.with_suffix(".pass.sh")
    wrapper.write_text(
        f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} {recording.resolve()}\n",
        encoding="utf-8",
    )
    os.chmod(wrapper, 0o700)
    opt = f"-p {priority} " if priority is not None else ""
    lines = [f"pass_persist {opt}.{s.strip('.')} {wrapper}" for s in subtrees]
    return SnmpdAgent(extra_config=[*lines, *agent_kwargs.pop("extra_config", ())], **agent_kwargs)


if __name__ == "__main__":  # pragma: no cover
    _serve(Path(sys.argv[1]))
