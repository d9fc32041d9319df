"""InfluxDB line protocol, rendered from columns with one f-string per point.

The sink sends text, never point objects: influxdb-client's `Point` costs a Python object,
a dict of tags and a dict of fields per point, and was the bottleneck of its batching
writer (see bench/sink.py). Here the measurement and tag set of a series are escaped once
and kept as a prefix; a point is that prefix, the field value and the timestamp.

Timestamps are milliseconds (the writer sends `precision=ms`). Values must be finite: the
pipeline refuses NaN and infinities before they get here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

# Line protocol has no way to carry a line break inside a name or value: they become spaces.
_KEY_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_MEASUREMENT_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})


def escape_key(s: str) -> str:
    """A tag key, tag value or field key, escaped (commas, equals signs, spaces, backslashes)."""
    return s.translate(_KEY_ESCAPES)


def escape_measurement(s: str) -> str:
    """A measurement name, escaped (commas, spaces, backslashes)."""
    return s.translate(_MEASUREMENT_ESCAPES)


def series_prefix(measurement: str, tags: Iterable[tuple[str, str]]) -> str:
    """`measurement,k=v,...` with tags sorted by key and empty values left out.

    Empty tag values are not allowed by line protocol; a missing tag is what they mean.
    Sorted keys are what InfluxDB recommends (it sorts them itself otherwise).
    """
    parts = [escape_measurement(measurement)]
    parts += [f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags) if v != ""]
    return ",".join(parts)


def render_samples(
    heads: Sequence[str],
    index: npt.NDArray[np.int64],
    ts_ms: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
) -> list[str]:
    """One line per sample: `heads[index[i]]` (prefix, space, `field=`), the value, the time.

    repr() of a float is the shortest text that reads back as the same double, so values
    survive the trip exactly.
    """
    return [
        f"{heads[i]}{v!r} {t}" for i, v, t in zip(index.tolist(), value.tolist(), ts_ms.tolist(), strict=True)
    ]


def render_fields(prefix: str, fields: Iterable[tuple[str, float | int | bool]], ts_ms: int) -> str:
    """One line from (field, value) pairs: ints get the `i` suffix, bools are 1i/0i."""
    out = []
    for name, v in fields:
        if isinstance(v, bool):
            text = "1i" if v else "0i"
        elif isinstance(v, int):
            text = f"{v}i"
        else:
            text = repr(float(v))
        out.append(f"{escape_key(name)}={text}")
    return f"{prefix} {','.join(out)} {ts_ms}"


def join_lines(lines: Sequence[str]) -> bytes:
    """A request body: the lines, each ended by a newline, UTF-8."""
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
