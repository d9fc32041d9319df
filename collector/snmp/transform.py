"""What a profile's column does to its readings before they become values: sentinels, per-row
scale and precision from other columns, offset.

All of it is declared in the profile (see `collector.snmp.profile`), none of it is vendor code:

- `sentinels`: readings that mean "no reading" (Huawei's 2147483647 on an ONU's optical power,
  -1 on its distance). The row gets no value for that column, and the reading is counted.
- `valid_when`: a gauge's reading counts only on rows whose status column holds one of the
  given values (RFC 3433: an ENTITY-SENSOR reading whose entPhySensorOperStatus is not ok(1)
  cannot be obtained or comes from a broken sensor); others are dropped and counted.
- a gauge's value is ``reading x scale x factor / 10^precision + offset`` where `factor` is
  read from the row's `scale_from` column (mapped through its `factors` if given) and
  `precision` from its `precision_from` column (only above 0 divides: RFC 3433 gives
  -8..-1 as a count of accurate digits and 0 as "not a fixed-point number", neither of which
  moves the decimal point). A row whose factor or precision is missing or unknown gets no
  value, counted, rather than a value off by powers of ten.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector.snmp.profile import Column, Table


@dataclass(slots=True)
class Dropped:
    """Readings refused in one table of one poll, by reason."""

    sentinel: int = 0
    unscaled: int = 0
    invalid: int = 0


def drop_sentinels(t: Table, cells: dict[str, np.ndarray], dropped: Dropped) -> None:
    """Turn every sentinel reading of the table's gauge and enum columns into "no reading"."""
    for c in t.columns:
        if not c.sentinels or c.name not in cells:
            continue
        hit = np.isin(cells[c.name], np.asarray(c.sentinels, dtype=np.float64))
        n = int(hit.sum())
        if n:
            col = cells[c.name].copy()
            col[hit] = np.nan
            cells[c.name] = col
            dropped.sentinel += n


def gauge_values(c: Column, cells: dict[str, np.ndarray], dropped: Dropped) -> np.ndarray:
    """The values of gauge column `c` per row (NaN: none), from its readings in `cells`."""
    raw = cells[c.name]
    if c.valid_when is not None and c.valid_when.column in cells:
        status = cells[c.valid_when.column]
        bad = np.isfinite(raw) & np.isfinite(status) & ~np.isin(status, c.valid_when.values)
        if bad.any():
            dropped.invalid += int(bad.sum())
            raw = np.where(bad, np.nan, raw)
    values = raw * c.scale
    if c.scale_from is not None:
        values = values * _factors(c, cells, raw.shape[0])
    if c.precision_from is not None:
        p = cells.get(c.precision_from)
        if p is None:
            p = np.full(raw.shape[0], np.nan)
        with np.errstate(invalid="ignore"):
            decimals = np.where(p > 0, p, 0.0)
        decimals[np.isnan(p)] = np.nan  # no precision reading, no value
        values = values / np.power(10.0, decimals)
    if c.offset:
        values = values + c.offset
    lost = np.isfinite(raw) & ~np.isfinite(values)
    dropped.unscaled += int(lost.sum())
    values[~np.isfinite(values)] = np.nan
    return values


def _factors(c: Column, cells: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Each row's multiplier from its `scale_from` column; NaN where missing or unknown."""
    assert c.scale_from is not None
    src = cells.get(c.scale_from.column)
    if src is None:
        return np.full(n, np.nan)
    if c.scale_from.factors is None:
        with np.errstate(invalid="ignore"):
            return np.where(src > 0, src, np.nan)  # bytes per unit: 0 or negative is no unit
    out = np.full(n, np.nan)
    for code, factor in c.scale_from.factors.items():
        out[src == code] = factor
    return out


def add_ratios(t: Table, metrics: dict[str, np.ndarray]) -> None:
    """The table's `ratios`, from its gauges' values (already scaled): no value where the
    denominator is 0 or either side has none (an empty CD-ROM drive has size 0)."""
    for r in t.ratios:
        num = metrics.get(t.column(r.numerator).metric or "")
        den = metrics.get(t.column(r.denominator).metric or "")
        if num is None or den is None:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            out = num / den
        out[~np.isfinite(out) | (den == 0)] = np.nan
        metrics[r.metric] = out
