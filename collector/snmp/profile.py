"""Device-kind profiles: which scalars and tables to poll, and what each column becomes.

A profile is a YAML file (built-in ones in `profiles/`, more in `snmp.profiles_dir`).
`extends:` inherits another profile's scalars and tables; a table of the same name
replaces the inherited one. Column types:

- `counter32` / `counter64`: a rate per second (x `scale`), metric `metric`; `fallback`
  names a 32-bit column used for rows or agents without the 64-bit one (row by row);
  `utilisation` adds rate / (speed column x `speed_scale`) as a ratio metric.
- `gauge`: the value (x `scale`) as metric `metric`; `fallback` names a gauge column read
  (in its own `scale`) on rows where this one is missing or 0 (ifHighSpeed -> ifSpeed).
- `enum`: an integer state with names (`states`); `state_changes: true` records changes.
- `string`: a label (e.g. ifName).

A table's `index` names the sub-identifiers of its rows' index (`[ifIndex, ontId]` for a
table indexed by ifIndex.ontId): each row then carries them as values and its series as
labels. Rows are identified by their whole index whether or not it is named.

A column marked `fallback_only` is walked only while some row needs it. A table's rows are
named by `row_name_column`, else `row_name_fallback` (ifName, else ifDescr), else their index.
"""

from __future__ import annotations

import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.snmp.ber import parse_oid

OID = tuple[int, ...]

# Labels every series of a device carries already (Device.labels()), not for an index part.
RESERVED_LABELS = frozenset({"operator", "technology", "commune", "village", "site", "kind", "target"})

ColumnType = Literal["counter32", "counter64", "gauge", "enum", "string"]
ScalarType = Literal["timeticks", "string", "gauge", "counter32", "counter64"]


class ProfileError(Exception):
    """A profile that cannot be used: file, where, why."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _HasOid(_M):
    """A named object at an OID (checked when the profile loads)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    oid: str

    @field_validator("oid")
    @classmethod
    def _oid(cls, v: str) -> str:
        parse_oid(v)
        return v

    @cached_property
    def oid_tuple(self) -> OID:
        return parse_oid(self.oid)


class Utilisation(_M):
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*_ratio$")
    speed: str
    speed_scale: float = Field(1.0, gt=0)
    # Rows whose `type_column` holds one of `uncapped_types` declare a speed that is no limit
    # (a software loopback says 10 Mbit/s and carries gigabits): their rates are not capped
    # by it, and no utilisation is computed.
    type_column: str | None = None
    uncapped_types: tuple[int, ...] = ()


class Column(_HasOid):
    type: ColumnType
    metric: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    scale: float = 1.0
    fallback: str | None = None
    fallback_only: bool = False
    utilisation: Utilisation | None = None
    states: dict[int, str] = Field(default_factory=dict)
    state_changes: bool = False

    @property
    def is_counter(self) -> bool:
        return self.type in ("counter32", "counter64")

    @property
    def bits(self) -> int:
        return 64 if self.type == "counter64" else 32


class Scalar(_HasOid):
    type: ScalarType


class Table(_M):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    row_label: str = Field("row", pattern=r"^[a-z][a-z0-9_]*$")
    row_name_column: str | None = None
    row_name_fallback: str | None = None
    index: tuple[str, ...] = ()
    columns: tuple[Column, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Table:
        names = {c.name for c in self.columns}
        if len(names) != len(self.columns):
            raise ValueError(f"table {self.name}: two columns share a name")
        by_name = {c.name: c for c in self.columns}
        for part in self.index:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", part):
                raise ValueError(f"table {self.name}: index part {part!r} is not a valid name")
            if part in names or part in RESERVED_LABELS or part == self.row_label:
                raise ValueError(f"table {self.name}: index part {part!r} clashes with a column or label")
        if len(set(self.index)) != len(self.index):
            raise ValueError(f"table {self.name}: two index parts share a name")
        for key in ("row_name_column", "row_name_fallback"):
            ref = getattr(self, key)
            if ref and (ref not in by_name or by_name[ref].type != "string"):
                raise ValueError(f"table {self.name}: {key} {ref!r} is not a string column")
        for c in self.columns:
            if c.fallback is not None:
                fb = by_name.get(c.fallback)
                if c.is_counter and (fb is None or not fb.is_counter):
                    raise ValueError(f"column {c.name}: fallback {c.fallback!r} must be a counter column")
                if c.type == "gauge" and (fb is None or fb.type != "gauge"):
                    raise ValueError(f"column {c.name}: fallback {c.fallback!r} must be a gauge column")
                if not c.is_counter and c.type != "gauge":
                    raise ValueError(f"column {c.name}: only counter and gauge columns take a fallback")
            if c.utilisation is not None and c.utilisation.speed not in names:
                raise ValueError(
                    f"column {c.name}: utilisation speed {c.utilisation.speed!r} is not a column"
                )
            if c.utilisation is not None and c.utilisation.type_column is not None:
                tc = by_name.get(c.utilisation.type_column)
                if tc is None or tc.type not in ("enum", "gauge"):
                    raise ValueError(
                        f"column {c.name}: utilisation type_column {c.utilisation.type_column!r}"
                        " must be an enum or gauge column"
                    )
            if c.type in ("counter32", "counter64", "gauge") and c.metric is None and not c.fallback_only:
                raise ValueError(f"column {c.name}: a {c.type} column needs a `metric` name")
        return self

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


class Profile(_M):
    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    description: str = ""
    extends: str | None = None
    scalars: tuple[Scalar, ...] = ()
    tables: tuple[Table, ...] = ()

    @property
    def uptime_scalar(self) -> Scalar | None:
        """sysUpTime: how counter resets are told from wraps."""
        for s in self.scalars:
            if s.oid_tuple == (1, 3, 6, 1, 2, 1, 1, 3, 0):
                return s
        return None


def _merge(base: Profile, child: Profile) -> Profile:
    scalars = {s.name: s for s in base.scalars} | {s.name: s for s in child.scalars}
    tables = {t.name: t for t in base.tables} | {t.name: t for t in child.tables}
    return Profile(
        name=child.name,
        description=child.description or base.description,
        extends=None,
        scalars=tuple(scalars.values()),
        tables=tuple(tables.values()),
    )


def _load_file(path: Path | resources.abc.Traversable) -> Profile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Profile.model_validate(data)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        e = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in e["loc"])
        raise ProfileError(f"{path}: {loc}: {e['msg']}") from exc


def load_profiles(extra_dir: Path | None = None) -> dict[str, Profile]:
    """Built-in profiles plus those in `extra_dir` (which win on a name clash), `extends` resolved."""
    raw: dict[str, Profile] = {}
    builtin = resources.files("collector.snmp") / "profiles"
    for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            p = _load_file(entry)
            raw[p.name] = p
    if extra_dir is not None:
        if not extra_dir.is_dir():
            raise ProfileError(f"{extra_dir}: snmp.profiles_dir is not a directory")
        for path in sorted(extra_dir.glob("*.y*ml")):
            p = _load_file(path)
            raw[p.name] = p
    resolved: dict[str, Profile] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> Profile:
        if name in resolved:
            return resolved[name]
        if name in chain:
            raise ProfileError(f"profile {name!r}: `extends` loops: {' -> '.join((*chain, name))}")
        p = raw.get(name)
        if p is None:
            raise ProfileError(f"profile {chain[-1] if chain else name!r} extends unknown profile {name!r}")
        out = _merge(resolve(p.extends, (*chain, name)), p) if p.extends else p
        resolved[name] = out
        return out

    for name in raw:
        resolve(name, ())
    return resolved
