"""The ingest's fastest path: a numba scanner from schema-v1 JSON bytes straight into numpy columns.

Why: at 50 measurements per message, building Python objects per measurement (dicts with
pydantic, structs with msgspec) and then turning them into columns cost more than the
whole rest of the ingest. This scanner walks the bytes once and writes every measurement
into the pipeline's column buffer (ts, one float per metric, a per-message key index), so
the Python left per message is constant, not per measurement.

It accepts a strict subset of what the reference decoder (`schema.parse`) accepts, and
says "not mine" (FALLBACK) for everything else, which then takes the reference path — so
refusals are always classified and explained by the reference, and the scanner needs no
error messages. The subset, chosen to be the common case and easy to get exactly right:

- printable ASCII only (32..126), no string escapes (anything else: FALLBACK);
- the schema's keys only, each at most once (an unknown or repeated key: FALLBACK);
- integers (ts, seq, sent_ts, v) as plain JSON integer tokens within the schema's range;
- other numbers only where they convert exactly with one IEEE operation (Clinger's fast
  path: at most 2**53 as significand, power of ten at most 22), so the float is the
  correctly rounded value every conforming JSON decoder produces; anything else: FALLBACK;
- every range, length, literal and pattern of docs/payload-v1.md checked here; the
  probe, lateness and future checks are the caller's (they need context);
- at most MAX_KEYS distinct (target, technology, operator) per message.

Linear in the payload, no recursion (the schema's depth is fixed), every loop bounded by
the payload length.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

from collector.core._jit import sample, zeros
from collector.mqtt.schema import INSTANCE_PATTERN, METRIC_NAMES, TECHNOLOGIES, Metrics

OK: Final = 0
FALLBACK: Final = 1
MAX_KEYS: Final = 64  # distinct (target, technology, operator) per message
N_METRICS: Final = len(METRIC_NAMES)

_MAX_SAFE: Final = 2**53  # the schema's integer bound, and the exact-float significand bound
_OFFSET_LIMIT: Final = 86_400_000.0
_POW10: Final = np.array([10.0**k for k in range(23)], dtype=np.float64)


def _names(names: tuple[str, ...]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Names as one flat byte array with offsets (numba cannot take a tuple of bytes)."""
    encoded = [n.encode("ascii") for n in names]
    flat = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    return flat, offsets


def _metric_bounds() -> npt.NDArray[np.float64]:
    """(lo, hi) of every metric, read from the schema itself so the two cannot drift."""
    from typing import get_args, get_type_hints

    import annotated_types

    out = np.empty((N_METRICS, 2), dtype=np.float64)
    hints = get_type_hints(Metrics, include_extras=True)
    for i, name in enumerate(METRIC_NAMES):
        _, info = get_args(hints[name])
        lo = [c.ge for c in info.metadata if isinstance(c, annotated_types.Ge)]
        hi = [c.le for c in info.metadata if isinstance(c, annotated_types.Le)]
        out[i] = (float(lo[0]), float(hi[0]))  # type: ignore[arg-type]
    return out


_INSTANCE_RE: Final = re.compile(INSTANCE_PATTERN)
TOP_NAMES: Final = (
    "v",
    "probe_id",
    "seq",
    "sent_ts",
    "clock_offset_ms",
    "clock_synced",
    "measurements",
    "instance",
)
MEAS_NAMES: Final = ("ts", "target", "technology", "operator", "metrics")
TABLES: Final = (*_names(TOP_NAMES), *_names(MEAS_NAMES), *_names(METRIC_NAMES), *_names(TECHNOLOGIES))
BOUNDS: Final = _metric_bounds()

_F = TypeVar("_F", bound=Callable[..., Any])


# `_nrt` is numba's own switch for it (not in its type stubs, hence the dict).
_BARE: Final[dict[str, Any]] = {"cache": True, "nogil": True, "_nrt": False}


def _bare(fn: _F) -> _F:
    """`kernel` without numba's reference counting (NRT) of arrays.

    Why: with it, every call of a helper below took and dropped a reference on the arrays it
    was passed (an atomic add each), a few dozen per measurement: a third of the scanner's
    time (0.38 -> 0.25 µs per bench measurement). Nothing here allocates or keeps an array
    (the caller owns them all), the one thing a function compiled without NRT must not do.
    """
    return cast(_F, numba.njit(**_BARE)(fn))


def _sample_buf() -> npt.NDArray[np.uint8]:
    """The registry's sample payload, read-only as `Scanner.scan` passes a payload."""
    return np.frombuffer(b'{"v":1}', dtype=np.uint8)


@sample(lambda: (_sample_buf(), 0))
@_bare
def _ws(buf: npt.NDArray[np.uint8], i: int) -> int:
    n = len(buf)
    while i < n and (buf[i] == 32 or buf[i] == 10 or buf[i] == 13 or buf[i] == 9):
        i += 1
    return i


@sample(lambda: (_sample_buf(), 0))
@_bare
def _string(buf: npt.NDArray[np.uint8], i: int) -> tuple[int, int]:
    """(start, end) of the string opening at i, or (-1, -1): not a plain ASCII string."""
    n = len(buf)
    if i >= n or buf[i] != 34:
        return -1, -1
    j = i + 1
    while j < n:
        c = buf[j]
        if c == 34:
            return i + 1, j
        if c < 32 or c == 92 or c >= 127:  # 127 (DEL) is a control character too
            return -1, -1
        j += 1
    return -1, -1


@sample(lambda: (_sample_buf(), 0, 0, TABLES[0], TABLES[1]))
@_bare
def _lookup(
    buf: npt.NDArray[np.uint8], s: int, e: int, flat: npt.NDArray[np.uint8], off: npt.NDArray[np.int64]
) -> int:
    """Index of buf[s:e] among the names, or -1."""
    for k in range(len(off) - 1):
        a, b = off[k], off[k + 1]
        if b - a != e - s:
            continue
        same = True
        for t in range(e - s):
            if buf[s + t] != flat[a + t]:
                same = False
                break
        if same:
            return k
    return -1


@sample(lambda: (_sample_buf(), 5, _POW10))
@_bare
def _number(
    buf: npt.NDArray[np.uint8], i: int, pow10: npt.NDArray[np.float64]
) -> tuple[int, int, float, int]:
    """(kind, int value, float value, next index) of the JSON number at i.

    kind 0: not one the scanner takes (FALLBACK); 1: an integer token (|value| <= 2**53);
    2: a number with fraction or exponent, converted exactly (see the module docstring).
    """
    n = len(buf)
    j = i
    neg = False
    if j < n and buf[j] == 45:  # '-'
        neg = True
        j += 1
    if j >= n or not (48 <= buf[j] <= 57):
        return 0, 0, 0.0, j
    mant = 0
    digits = 0
    if buf[j] == 48:  # a leading zero stands alone
        j += 1
        if j < n and 48 <= buf[j] <= 57:
            return 0, 0, 0.0, j
    else:
        while j < n and 48 <= buf[j] <= 57:
            if digits >= 17:
                return 0, 0, 0.0, j
            mant = mant * 10 + (int(buf[j]) - 48)
            digits += 1
            j += 1
    exp10 = 0
    is_int = True
    if j < n and buf[j] == 46:  # '.'
        is_int = False
        j += 1
        if j >= n or not (48 <= buf[j] <= 57):
            return 0, 0, 0.0, j
        while j < n and 48 <= buf[j] <= 57:
            if digits >= 17:
                return 0, 0, 0.0, j
            mant = mant * 10 + (int(buf[j]) - 48)
            if mant > 0:
                digits += 1
            exp10 -= 1
            j += 1
    if j < n and (buf[j] == 101 or buf[j] == 69):  # 'e' / 'E'
        is_int = False
        j += 1
        eneg = False
        if j < n and (buf[j] == 43 or buf[j] == 45):
            eneg = buf[j] == 45
            j += 1
        if j >= n or not (48 <= buf[j] <= 57):
            return 0, 0, 0.0, j
        e = 0
        edigits = 0
        while j < n and 48 <= buf[j] <= 57:
            if edigits >= 4:
                return 0, 0, 0.0, j
            e = e * 10 + (int(buf[j]) - 48)
            edigits += 1
            j += 1
        exp10 += -e if eneg else e
    if mant > _MAX_SAFE:
        return 0, 0, 0.0, j
    if is_int:
        v = -mant if neg else mant
        return 1, v, float(v), j
    if mant == 0:
        x = 0.0
    elif 0 <= exp10 <= 22:
        x = float(mant) * pow10[exp10]
    elif -22 <= exp10 < 0:
        x = float(mant) / pow10[-exp10]
    else:
        return 0, 0, 0.0, j
    return 2, 0, -x if neg else x, j


@sample(lambda: (_sample_buf(), 6, 125))
@_bare
def _after_value(buf: npt.NDArray[np.uint8], i: int, close: int) -> tuple[int, bool]:
    """Skip whitespace after a member; (index past ',' or at `close`, whether more follow),
    or (-1, False) when neither comes."""
    i = _ws(buf, i)
    if i < len(buf) and buf[i] == 44:  # ','
        return _ws(buf, i + 1), True
    if i < len(buf) and buf[i] == close:
        return i, False
    return -1, False


def _scan_sample() -> tuple[Any, ...]:
    """The registry's sample for the scanner: one small payload into one row, as `Scanner.scan`
    passes it (any payload does: the kernel's types do not depend on it)."""
    cap = 1
    out = (zeros(np.int64, cap), zeros(np.float64, cap, N_METRICS), zeros(np.int32, cap))
    return (_sample_buf(), *TABLES, BOUNDS, _POW10, cap, *out, np.zeros((MAX_KEYS, 5), dtype=np.int64), 0, 0)


@sample(_scan_sample)
@_bare
def scan_batch(
    buf: npt.NDArray[np.uint8],
    top_flat: npt.NDArray[np.uint8],
    top_off: npt.NDArray[np.int64],
    meas_flat: npt.NDArray[np.uint8],
    meas_off: npt.NDArray[np.int64],
    metric_flat: npt.NDArray[np.uint8],
    metric_off: npt.NDArray[np.int64],
    tech_flat: npt.NDArray[np.uint8],
    tech_off: npt.NDArray[np.int64],
    bounds: npt.NDArray[np.float64],
    pow10: npt.NDArray[np.float64],
    max_rows: int,
    out_ts: npt.NDArray[np.int64],
    out_values: npt.NDArray[np.float64],
    out_key: npt.NDArray[np.int32],
    keys: npt.NDArray[np.int64],
    pos: int,
    key_base: int,
) -> tuple[int, int, int, int, int, float, int, int, int, int, int, int, int]:
    """Scan one batch into the columns from row `pos` (at most `max_rows` measurements).

    Returns (status, rows, probe_id start, probe_id end, seq, clock_offset_ms or NaN,
    clock_synced -1/0/1, newest ts, oldest ts, distinct keys, has sent_ts, instance start
    (-1: none), instance end).
    `keys[k]` holds (target start, end, technology index, operator start, end) of the
    message's k-th distinct (target, technology, operator); `out_key[row]` is `key_base` + its k.
    """
    nan = np.nan
    fail = (FALLBACK, 0, 0, 0, 0, nan, -1, 0, 0, 0, 0, -1, 0)
    n = len(buf)
    i = _ws(buf, 0)
    if i >= n or buf[i] != 123:  # '{'
        return fail
    i = _ws(buf, i + 1)
    seen = 0
    probe_s = probe_e = 0
    inst_s, inst_e = -1, 0
    seq = 0
    offset = nan
    synced = -1
    rows = 0
    n_keys = 0
    newest = -1
    oldest = _MAX_SAFE + 1
    more = i < n and buf[i] != 125
    # The three object levels (batch, measurement, metrics) each read their members' keys
    # inline: a shared helper returning a tuple measured 40 % slower (numba did not inline it).
    while more:
        ks, ke = _string(buf, i)
        if ks < 0:
            return fail
        k = _lookup(buf, ks, ke, top_flat, top_off)
        if k < 0 or (seen >> k) & 1:
            return fail
        seen |= 1 << k
        i = _ws(buf, ke + 1)
        if i >= n or buf[i] != 58:  # ':'
            return fail
        i = _ws(buf, i + 1)
        if k == 0 or k == 2 or k == 3:  # v, seq, sent_ts: integers
            kind, iv, _, i = _number(buf, i, pow10)
            if kind != 1 or iv < 0:
                return fail
            if k == 0 and iv != 1:
                return fail
            if k == 2:
                seq = iv
        elif k == 1:  # probe_id: compared with the topic's by the caller
            probe_s, probe_e = _string(buf, i)
            if probe_s < 0:
                return fail
            i = probe_e + 1
        elif k == 7:  # instance: its pattern is checked by the caller
            inst_s, inst_e = _string(buf, i)
            if inst_s < 0:
                return fail
            i = inst_e + 1
        elif k == 4:  # clock_offset_ms
            kind, _, fv, i = _number(buf, i, pow10)
            if kind == 0 or not (-_OFFSET_LIMIT <= fv <= _OFFSET_LIMIT):
                return fail
            offset = fv
        elif k == 5:  # clock_synced
            if i + 4 <= n and buf[i] == 116 and buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101:
                synced = 1
                i += 4
            elif (
                i + 5 <= n
                and buf[i] == 102
                and buf[i + 1] == 97
                and buf[i + 2] == 108
                and buf[i + 3] == 115
                and buf[i + 4] == 101
            ):
                synced = 0
                i += 5
            else:
                return fail
        else:  # measurements
            if i >= n or buf[i] != 91:  # '['
                return fail
            i = _ws(buf, i + 1)
            more_m = i < n and buf[i] != 93
            if not more_m:
                return fail  # at least one measurement
            while more_m:
                if rows >= max_rows or i >= n or buf[i] != 123:
                    return fail
                row = pos + rows
                out_values[row, :] = nan
                i = _ws(buf, i + 1)
                mseen = 0
                ts = -1
                ts_s = ts_e = op_s = op_e = 0
                tech = -1
                more_f = i < n and buf[i] != 125
                while more_f:
                    fs, fe = _string(buf, i)
                    if fs < 0:
                        return fail
                    f = _lookup(buf, fs, fe, meas_flat, meas_off)
                    if f < 0 or (mseen >> f) & 1:
                        return fail
                    mseen |= 1 << f
                    i = _ws(buf, fe + 1)
                    if i >= n or buf[i] != 58:
                        return fail
                    i = _ws(buf, i + 1)
                    if f == 0:  # ts
                        kind, iv, _, i = _number(buf, i, pow10)
                        if kind != 1 or iv < 0:
                            return fail
                        ts = iv
                    elif f == 1:  # target: 1..255 characters (ASCII here, so bytes)
                        ts_s, ts_e = _string(buf, i)
                        if ts_s < 0 or not (1 <= ts_e - ts_s <= 255):
                            return fail
                        i = ts_e + 1
                    elif f == 2:  # technology: one of the literals
                        s, e = _string(buf, i)
                        if s < 0:
                            return fail
                        tech = _lookup(buf, s, e, tech_flat, tech_off)
                        if tech < 0:
                            return fail
                        i = e + 1
                    elif f == 3:  # operator: ^[a-z0-9_-]{1,32}$
                        op_s, op_e = _string(buf, i)
                        if op_s < 0 or not (1 <= op_e - op_s <= 32):
                            return fail
                        for t in range(op_s, op_e):
                            c = buf[t]
                            if not ((97 <= c <= 122) or (48 <= c <= 57) or c == 95 or c == 45):
                                return fail
                        i = op_e + 1
                    else:  # metrics: at least one known metric, each within its range
                        if i >= n or buf[i] != 123:
                            return fail
                        i = _ws(buf, i + 1)
                        got = 0
                        more_x = i < n and buf[i] != 125
                        if not more_x:
                            return fail
                        while more_x:
                            xs, xe = _string(buf, i)
                            if xs < 0:
                                return fail
                            x = _lookup(buf, xs, xe, metric_flat, metric_off)
                            if x < 0 or (got >> x) & 1:
                                return fail
                            got |= 1 << x
                            i = _ws(buf, xe + 1)
                            if i >= n or buf[i] != 58:
                                return fail
                            kind, _, fv, i = _number(buf, _ws(buf, i + 1), pow10)
                            if kind == 0 or not (bounds[x, 0] <= fv <= bounds[x, 1]):
                                return fail
                            out_values[row, x] = fv
                            i, more_x = _after_value(buf, i, 125)
                            if i < 0:
                                return fail
                        i += 1  # past the metrics' '}'
                    i, more_f = _after_value(buf, i, 125)
                    if i < 0:
                        return fail
                if mseen != 31:  # every measurement field is required
                    return fail
                i += 1  # past the measurement's '}'
                out_ts[row] = ts
                newest = max(newest, ts)
                oldest = min(oldest, ts)
                # Which distinct (target, technology, operator) of this message it is.
                kk = -1
                for q in range(n_keys):
                    if (
                        keys[q, 2] == tech
                        and keys[q, 1] - keys[q, 0] == ts_e - ts_s
                        and keys[q, 4] - keys[q, 3] == op_e - op_s
                    ):
                        same = True
                        for t in range(ts_e - ts_s):
                            if buf[keys[q, 0] + t] != buf[ts_s + t]:
                                same = False
                                break
                        if same:
                            for t in range(op_e - op_s):
                                if buf[keys[q, 3] + t] != buf[op_s + t]:
                                    same = False
                                    break
                        if same:
                            kk = q
                            break
                if kk < 0:
                    if n_keys >= len(keys):
                        return fail
                    kk = n_keys
                    keys[kk, 0] = ts_s
                    keys[kk, 1] = ts_e
                    keys[kk, 2] = tech
                    keys[kk, 3] = op_s
                    keys[kk, 4] = op_e
                    n_keys += 1
                out_key[row] = key_base + kk
                rows += 1
                i, more_m = _after_value(buf, i, 93)
                if i < 0:
                    return fail
            i += 1  # past ']'
        i, more = _after_value(buf, i, 125)
        if i < 0:
            return fail
    if i >= n or buf[i] != 125:
        return fail
    if _ws(buf, i + 1) != n:
        return fail
    if seen & 0b1000111 != 0b1000111:  # v, probe_id, seq, measurements are required
        return fail
    has_sent = (seen >> 3) & 1
    return (OK, rows, probe_s, probe_e, seq, offset, synced, newest, oldest, n_keys, has_sent, inst_s, inst_e)


class Scanner:
    """Runs `scan_batch` for one consumer (holds its scratch; not shared between threads)."""

    def __init__(self) -> None:
        self.keys = np.zeros((MAX_KEYS, 5), dtype=np.int64)

    def scan(
        self,
        payload: bytes,
        max_rows: int,
        out_ts: npt.NDArray[np.int64],
        out_values: npt.NDArray[np.float64],
        out_key: npt.NDArray[np.int32],
        pos: int,
        key_base: int = 0,
    ) -> Scanned | None:
        """Scan `payload` into the columns from row `pos` (`out_key`: `key_base` + the index of
        the row's key in the result's `keys`); None: the reference decoder's turn."""
        buf = np.frombuffer(payload, dtype=np.uint8)
        r = scan_batch(
            buf, *TABLES, BOUNDS, _POW10, max_rows, out_ts, out_values, out_key, self.keys, pos, key_base
        )
        if r[0] != OK:
            return None
        _, rows, ps, pe, seq, offset, synced, newest, oldest, n_keys, _, inst_s, inst_e = r
        instance = None
        if inst_s >= 0:
            instance = payload[inst_s:inst_e].decode("ascii", "replace")
            if not _INSTANCE_RE.fullmatch(instance):
                return None
        keys = [
            (
                payload[k[0] : k[1]].decode("ascii"),
                TECHNOLOGIES[k[2]],
                payload[k[3] : k[4]].decode("ascii"),
            )
            for k in self.keys[:n_keys].tolist()
        ]
        return Scanned(
            probe_id=payload[ps:pe].decode("ascii"),
            seq=seq,
            rows=rows,
            pos=pos,
            key_base=key_base,
            keys=keys,
            newest_ts=newest,
            oldest_ts=oldest,
            clock_offset_ms=None if offset != offset else offset,
            clock_synced=None if synced < 0 else bool(synced),
            instance=instance,
        )


@dataclass(slots=True)
class Scanned:
    """What the scanner found; the rows themselves are in the caller's columns."""

    probe_id: str
    seq: int
    rows: int
    pos: int  # first row in the columns
    key_base: int  # rows' key numbers are key_base + the index in `keys`
    keys: list[tuple[str, str, str]]  # distinct (target, technology, operator); rows index them
    newest_ts: int
    oldest_ts: int
    clock_offset_ms: float | None
    clock_synced: bool | None
    instance: str | None = None
    digest: str = ""  # content digest, set by the pipeline for a batch without an instance id
    seq_conflict: bool = False  # set by the pipeline: a seen seq with other content
