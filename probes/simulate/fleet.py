"""The simulated fleet: where the probes stand and what they measure over.

Communes come from a small packaged CSV (``data/communes.csv``); after the July 2025
reform Thanh Hóa has only two levels, province -> commune/ward, so a probe is placed in a
commune (``xa``) or ward (``phuong``) and a village/residential group inside it, never in
a district.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collector.model import ProbeInfo

OPERATORS: tuple[str, ...] = ("viettel", "vnpt", "mobifone")
TECHNOLOGIES: tuple[str, ...] = ("4G", "5G", "FTTH")
MOBILE_TECHNOLOGIES: frozenset[str] = frozenset({"4G", "5G"})
TERRAINS: tuple[str, ...] = ("urban", "plain", "coastal", "mountain")
COMMUNE_TYPES: tuple[str, ...] = ("xa", "phuong")

PROBE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# Rough bounding box of Thanh Hóa province; a coordinate outside it is a typo in the CSV.
_LAT_RANGE = (19.3, 20.7)
_LON_RANGE = (104.4, 106.1)

# P(technology) by terrain, in TECHNOLOGIES order (4G, 5G, FTTH). 5G is rolled out in
# the urban wards first; in the mountains almost everything is 4G and fibre is rare.
_TECH_MIX: dict[str, tuple[float, float, float]] = {
    "urban": (0.35, 0.35, 0.30),
    "coastal": (0.50, 0.15, 0.35),
    "plain": (0.55, 0.10, 0.35),
    "mountain": (0.82, 0.03, 0.15),
}
# P(operator | technology), in OPERATORS order (viettel, vnpt, mobifone). Fixed broadband
# is mainly VNPT and Viettel; MobiFone has a small FTTH footprint.
_OPERATOR_MIX: dict[str, tuple[float, float, float]] = {
    "4G": (0.50, 0.25, 0.25),
    "5G": (0.50, 0.30, 0.20),
    "FTTH": (0.45, 0.45, 0.10),
}
# How many probes a commune gets relative to the others: the wards are denser.
_TERRAIN_WEIGHT: dict[str, float] = {"urban": 3.0, "coastal": 2.0, "plain": 1.5, "mountain": 1.0}
# Villages (thôn/bản) or residential groups (tổ dân phố) per commune, for the village code.
_VILLAGES: dict[str, int] = {"urban": 20, "coastal": 14, "plain": 12, "mountain": 10}
_SITE_PREFIX: dict[str, str] = {"viettel": "VTL", "vnpt": "VNP", "mobifone": "MBF"}
# Illustrative measurement servers (example.vn is not a real service).
_TARGETS: tuple[str, ...] = ("speedtest-thh.example.vn", "speedtest-hni.example.vn")
_TARGET_P: tuple[float, float] = (0.7, 0.3)


@dataclass(frozen=True)
class Commune:
    """One commune-level unit (xã or phường) of the province."""

    code: str
    name: str
    type: str
    lat: float
    lon: float
    terrain: str


@dataclass(frozen=True)
class SimProbe:
    """One simulated field probe and the fixed facts about it."""

    probe_id: str
    commune: str
    village: str
    site: str
    operator: str
    technology: str
    target: str
    # Not part of the brief's identity fields, but the measurement model needs it
    # (mountain 4G is slower) and it saves a commune lookup per measurement.
    terrain: str = "plain"

    @property
    def mobile(self) -> bool:
        """True for a probe on a mobile network (reports radio metrics)."""
        return self.technology in MOBILE_TECHNOLOGIES

    def info(self, expected_interval_s: float) -> ProbeInfo:
        """Its registration in the store: placement, and how often it sends a batch."""
        from collector.model import ProbeInfo  # the simulator stands without the store

        return ProbeInfo(
            self.probe_id,
            self.commune,
            self.village,
            self.site,
            self.operator,
            self.technology,
            expected_interval_s=expected_interval_s,
        )


def _default_csv_text() -> str:
    return resources.files("probes.simulate").joinpath("data/communes.csv").read_text(encoding="utf-8")


def load_communes(path: Path | None = None) -> list[Commune]:
    """Read communes from ``path`` (default: the packaged ``data/communes.csv``).

    Raises ValueError naming the line when a row is malformed, so a bad edit to the CSV
    fails loudly instead of producing a strange fleet.
    """
    text = _default_csv_text() if path is None else path.read_text(encoding="utf-8")
    source = "communes.csv" if path is None else str(path)
    reader = csv.DictReader(io.StringIO(text))
    expected = ["code", "name", "type", "lat", "lon", "terrain"]
    if reader.fieldnames != expected:
        raise ValueError(f"{source}: header must be {','.join(expected)}, got {reader.fieldnames}")
    communes: list[Commune] = []
    seen: set[str] = set()
    for row in reader:
        where = f"{source}:{reader.line_num}"
        code = row["code"].strip()
        if not re.fullmatch(r"\d{5}", code):
            raise ValueError(f"{where}: code must be 5 digits, got {code!r}")
        if code in seen:
            raise ValueError(f"{where}: duplicate code {code}")
        seen.add(code)
        if row["type"] not in COMMUNE_TYPES:
            raise ValueError(f"{where}: type must be one of {COMMUNE_TYPES}, got {row['type']!r}")
        if row["terrain"] not in TERRAINS:
            raise ValueError(f"{where}: terrain must be one of {TERRAINS}, got {row['terrain']!r}")
        try:
            lat, lon = float(row["lat"]), float(row["lon"])
        except ValueError as exc:
            raise ValueError(f"{where}: lat/lon must be numbers") from exc
        if not (_LAT_RANGE[0] <= lat <= _LAT_RANGE[1] and _LON_RANGE[0] <= lon <= _LON_RANGE[1]):
            raise ValueError(f"{where}: ({lat}, {lon}) is outside Thanh Hóa")
        if not row["name"].strip():
            raise ValueError(f"{where}: empty name")
        communes.append(Commune(code, row["name"].strip(), row["type"], lat, lon, row["terrain"]))
    if not communes:
        raise ValueError(f"{source}: no communes")
    return communes


def _allocate(n_probes: int, communes: list[Commune]) -> list[int]:
    """How many probes each commune gets: at least one each when there are enough,
    the rest in proportion to the terrain weight (largest remainder, ties by order)."""
    counts = [0] * len(communes)
    rest = n_probes
    if n_probes >= len(communes):
        counts = [1] * len(communes)
        rest = n_probes - len(communes)
    weights = np.array([_TERRAIN_WEIGHT[c.terrain] for c in communes])
    quotas = weights / weights.sum() * rest
    floors = np.floor(quotas).astype(int)
    for i, f in enumerate(floors):
        counts[i] += int(f)
    left = rest - int(floors.sum())
    # Stable sort so equal remainders keep CSV order: deterministic without a seed.
    order = sorted(range(len(communes)), key=lambda i: -(quotas[i] - floors[i]))
    for i in order[:left]:
        counts[i] += 1
    return counts


def build_fleet(n_probes: int = 200, seed: int = 0, communes: list[Commune] | None = None) -> list[SimProbe]:
    """Build ``n_probes`` simulated probes spread over ``communes`` (default: the packaged list).

    The same ``seed`` gives the same fleet. Probe ids are ``th-<commune>-p<nnn>``, numbered
    from 001 inside each commune.
    """
    if n_probes < 0:
        raise ValueError("n_probes must be >= 0")
    communes = load_communes() if communes is None else communes
    if not communes:
        raise ValueError("need at least one commune")
    rng = np.random.default_rng(seed)
    fleet: list[SimProbe] = []
    for commune, count in zip(communes, _allocate(n_probes, communes), strict=True):
        if count > 999:
            raise ValueError(f"commune {commune.code}: {count} probes do not fit p<nnn>")
        for n in range(1, count + 1):
            tech = TECHNOLOGIES[rng.choice(3, p=_TECH_MIX[commune.terrain])]
            operator = OPERATORS[rng.choice(3, p=_OPERATOR_MIX[tech])]
            village = f"{commune.code}-v{int(rng.integers(1, _VILLAGES[commune.terrain] + 1)):02d}"
            prefix = _SITE_PREFIX[operator]
            if tech == "FTTH":
                # One OLT per operator per commune is typical outside the city.
                site = f"{prefix}-OLT-{commune.code}-01"
            else:
                site = f"{prefix}-BTS-{commune.code}-{int(rng.integers(1, 4)):02d}"
            target = _TARGETS[rng.choice(len(_TARGETS), p=_TARGET_P)]
            fleet.append(
                SimProbe(
                    probe_id=f"th-{commune.code}-p{n:03d}",
                    commune=commune.code,
                    village=village,
                    site=site,
                    operator=operator,
                    technology=tech,
                    target=target,
                    terrain=commune.terrain,
                )
            )
    return fleet
