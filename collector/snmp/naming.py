"""Row names composed by a profile's `row_name_format`, with joins to another table.

`row_name_format: "{interfaces[ifIndex]}:{ontId}"` names an ONU indexed by ifIndex.ontId
"GPON 0/1/0:3": `{ontId}` is an index part of the row, `{interfaces[ifIndex]}` the label of
the row of table `interfaces` whose index is this row's `ifIndex` (that table is indexed by
one sub-identifier and comes before this one in the profile), `{hwGponDeviceOntDespt}` a
string column of the row. A missing piece reads as empty (a joined row not seen: its index
number); a name that comes out empty falls back to the row's index.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from collector.snmp.client import ColumnData

FIELD = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)(?:\[([A-Za-z][A-Za-z0-9_]*)\])?\}")
TAG_EXCEPTIONS = 0x80


def format_fields(fmt: str) -> list[tuple[str, str | None]]:
    """The `{name}` and `{table[part]}` fields of a format, in order."""
    return [(m.group(1), m.group(2)) for m in FIELD.finditer(fmt)]


def check_format(fmt: str) -> None:
    """Refuse braces that are no field (a typo would otherwise become part of every name)."""
    rest = FIELD.sub("", fmt)
    if "{" in rest or "}" in rest:
        raise ValueError(
            f"row_name_format {fmt!r}: fields are {{column}}, {{indexPart}} or {{table[indexPart]}}"
        )


def compose_names(
    fmt: str,
    rows: np.ndarray,
    cols: dict[str, ColumnData],
    parts: list[dict[str, int]] | None,
    index_names: list[str],
    label_of: Callable[[str, int], str | None],
) -> list[str]:
    """Each row's name from `fmt` (see the module docstring)."""
    fields = format_fields(fmt)
    strings = {name: strings_by_row(cols[name]) for name, table in fields if table is None and name in cols}
    out = []
    for i, r in enumerate(rows.tolist()):
        row_parts = parts[i] if parts else {}

        def value(m: re.Match[str], r: int = r, row_parts: dict[str, int] = row_parts) -> str:
            name, part = m.group(1), m.group(2)
            if part is not None:
                idx = row_parts.get(part)
                if idx is None:
                    return ""
                return label_of(name, idx) or str(idx)
            if name in row_parts:
                return str(row_parts[name])
            return strings.get(name, {}).get(r, "").strip()

        name = FIELD.sub(value, fmt).strip()
        out.append(name or index_names[i])
    return out


def strings_by_row(cd: ColumnData) -> dict[int, str]:
    """A string column's values by row id (UTF-8, undecodable bytes replaced; no exception rows)."""
    if cd.strings is None:
        return {}
    ok = (cd.tag < TAG_EXCEPTIONS).tolist()
    return {
        r: b.decode("utf-8", errors="replace")
        for r, b, good in zip(cd.index.tolist(), cd.strings, ok, strict=True)
        if good
    }
