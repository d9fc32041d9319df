"""Administrative units: communes (xã/phường) and villages, imported from CSV or JSON.

Since 1 July 2025 a province has two tiers of local government, province -> commune or
ward; villages and residential groups (thôn, bản, khu phố, tổ dân phố) belong to a
commune. Districts no longer exist and are refused, not silently dropped, so an old file
is noticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collector.inventory.tabular import Errors, Table, number_of, text_of

COMMUNE_TYPES = {"xa": "xa", "xã": "xa", "phuong": "phuong", "phường": "phuong"}
COMMUNE_COLUMNS = ("code", "name", "type", "lat", "lon")
VILLAGE_COLUMNS = ("code", "name", "commune")
# Columns other tools keep in the same file (the simulator's terrain): read past, not stored.
IGNORED_COLUMNS = frozenset({"terrain"})
CODE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,31}$")
# Vietnam's extent, generously: a coordinate outside it is a swapped or mistyped column.
LAT_RANGE = (8.0, 24.0)
LON_RANGE = (102.0, 110.0)


@dataclass(frozen=True, slots=True)
class CommuneUnit:
    code: str
    name: str
    type: str  # "xa" or "phuong"
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class VillageUnit:
    code: str
    name: str
    commune: str


def _check_columns(table: Table, required: tuple[str, ...], errors: Errors) -> None:
    for c in table.columns:
        if c.lower() == "district" or c.lower().startswith(("district", "huyen", "huyện")):
            errors.add(1, c, "districts no longer exist (two-tier local government since 1 July 2025)")
        elif c not in required and c not in IGNORED_COLUMNS:
            errors.add(1, c, f"unknown column; expected {', '.join(required)}")
    for c in required:
        if c not in table.columns:
            errors.add(1, c, "missing column")


def _code(row: dict[str, object], line: int, column: str, errors: Errors) -> str | None:
    code = text_of(row.get(column))
    if not CODE_RE.match(code):
        errors.add(line, column, f"{code[:40]!r} is not a unit code (letters, digits, '_.-', at most 32)")
        return None
    return code


def _coordinate(
    row: dict[str, object], line: int, column: str, bounds: tuple[float, float], errors: Errors
) -> float:
    try:
        x = number_of(row.get(column))
    except ValueError as exc:
        errors.add(line, column, str(exc))
        return 0.0
    if x is None:
        errors.add(line, column, "required")
        return 0.0
    if not bounds[0] <= x <= bounds[1]:
        errors.add(line, column, f"{x} is outside {bounds[0]}..{bounds[1]} (columns swapped?)")
    return x


def parse_communes(table: Table, errors: Errors) -> list[CommuneUnit]:
    """Communes from a table (code, name, type xa/phuong or xã/phường, lat, lon)."""
    _check_columns(table, COMMUNE_COLUMNS, errors)
    if errors.total:
        return []
    out: list[CommuneUnit] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        code = _code(row, line, "code", errors)
        name = text_of(row.get("name"))
        if not name:
            errors.add(line, "name", "required")
        kind = COMMUNE_TYPES.get(text_of(row.get("type")).lower())
        if kind is None:
            errors.add(
                line, "type", f"{text_of(row.get('type'))[:20]!r}: expected xa (xã) or phuong (phường)"
            )
        lat = _coordinate(row, line, "lat", LAT_RANGE, errors)
        lon = _coordinate(row, line, "lon", LON_RANGE, errors)
        if code is not None:
            if code in seen:
                errors.add(line, "code", f"{code} is already on line {seen[code]}")
            seen[code] = line
        if code and name and kind:
            out.append(CommuneUnit(code, name, kind, lat, lon))
    return out


def parse_villages(table: Table, known_communes: set[str], errors: Errors) -> list[VillageUnit]:
    """Villages from a table (code, name, commune); the commune must be known."""
    _check_columns(table, VILLAGE_COLUMNS, errors)
    if errors.total:
        return []
    out: list[VillageUnit] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        code = _code(row, line, "code", errors)
        name = text_of(row.get("name"))
        if not name:
            errors.add(line, "name", "required")
        commune = text_of(row.get("commune"))
        if commune not in known_communes:
            errors.add(line, "commune", f"{commune[:40]!r} is not an imported commune")
        if code is not None:
            if code in seen:
                errors.add(line, "code", f"{code} is already on line {seen[code]}")
            seen[code] = line
        if code and name and commune in known_communes:
            out.append(VillageUnit(code, name, commune))
    return out
