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
named by `row_name_format` (composed, with joins: `collector.snmp.naming`), else by
`row_name_column`, else `row_name_fallback` (ifName, else ifDescr), else their index.

Values (see `collector.snmp.transform`): `sentinels` (gauge, enum) are readings that mean "no
reading" (Huawei's 2147483647): no value, counted. A gauge's value is
reading x `scale` x (the row's `scale_from` factor) / 10^(the row's `precision_from` column,
where above 0) + `offset`. A table's `ratios` are metrics of one gauge's value over another's.

A table of a profile that `extends` another with `merge: true` changes the inherited table of
the same name: its fields replace the inherited ones, each column is merged key by key onto
the inherited column of that name (or added), and `drop_columns` removes columns.

`traps:` names vendor notifications that set a table row's state (`Trap`; the trap
receiver applies them).

Every problem is a ProfileError naming the file, the line and the dotted key.
`ProfileSource` re-reads `snmp.profiles_dir` when its files change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from collector.snmp.ber import parse_oid
from collector.snmp.naming import check_format, format_fields

OID = tuple[int, ...]

# Labels every series of a device carries already (Device.labels()), not for an index part.
RESERVED_LABELS = frozenset({"operator", "technology", "commune", "village", "site", "kind", "target"})

ColumnType = Literal["counter32", "counter64", "gauge", "enum", "string"]
ScalarType = Literal["timeticks", "string", "gauge", "counter32", "counter64"]


class ProfileError(Exception):
    """A profile that cannot be used: the file, the line and key where it goes wrong, and why."""

    def __init__(self, source: str, reason: str, line: int | None = None, key: str = "") -> None:
        self.source, self.reason, self.line, self.key = source, reason, line, key
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


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


class ScaleFrom(_M):
    """A per-row multiplier read from another column of the row: `factors[value]` where
    `factors` is given (ENTITY-SENSOR's entPhySensorScale: an SI prefix code), else the value
    itself (HOST-RESOURCES' hrStorageAllocationUnits: bytes per unit)."""

    column: str
    factors: dict[int, float] | None = None


class ValidWhen(_M):
    """A gauge's reading counts only on rows whose `column` holds one of `values`
    (ENTITY-SENSOR: entPhySensorOperStatus ok(1)); rows without that column keep it."""

    column: str
    values: tuple[int, ...] = Field(min_length=1)


class Column(_HasOid):
    type: ColumnType
    metric: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    scale: float = 1.0
    offset: float = 0.0
    fallback: str | None = None
    fallback_only: bool = False
    utilisation: Utilisation | None = None
    states: dict[int, str] = Field(default_factory=dict)
    state_changes: bool = False
    sentinels: tuple[int, ...] = ()
    scale_from: ScaleFrom | None = None
    precision_from: str | None = None
    valid_when: ValidWhen | None = None

    @property
    def is_counter(self) -> bool:
        return self.type in ("counter32", "counter64")

    @property
    def bits(self) -> int:
        return 64 if self.type == "counter64" else 32


class Scalar(_HasOid):
    type: ScalarType


class Ratio(_M):
    """A metric that is one gauge column's value divided by another's, row by row (after
    each one's scale): storage used / size. No value where the denominator is 0 or missing."""

    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    numerator: str
    denominator: str


class Table(_M):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    row_label: str = Field("row", pattern=r"^[a-z][a-z0-9_]*$")
    row_name_column: str | None = None
    row_name_fallback: str | None = None
    index: tuple[str, ...] = ()
    row_name_format: str | None = None
    columns: tuple[Column, ...] = Field(min_length=1)
    ratios: tuple[Ratio, ...] = ()

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
        if self.row_name_format is not None:
            check_format(self.row_name_format)
            for field, joined_by in format_fields(self.row_name_format):
                if joined_by is not None and joined_by not in self.index:
                    raise ValueError(
                        f"table {self.name}: row_name_format: {joined_by!r} is not an index part"
                    )
                col = by_name.get(field)
                if joined_by is None and field not in self.index and (col is None or col.type != "string"):
                    raise ValueError(
                        f"table {self.name}: row_name_format: {field!r} is no index part or string column"
                    )
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
            if c.sentinels and c.type not in ("gauge", "enum"):
                raise ValueError(f"column {c.name}: only gauge and enum columns take `sentinels`")
            if c.type != "gauge" and (c.scale_from or c.precision_from or c.offset or c.valid_when):
                raise ValueError(
                    f"column {c.name}: only gauge columns take scale_from, precision_from, offset, valid_when"
                )
            for key, ref in (
                ("scale_from", c.scale_from.column if c.scale_from else None),
                ("precision_from", c.precision_from),
                ("valid_when", c.valid_when.column if c.valid_when else None),
            ):
                if ref is not None and (ref not in by_name or by_name[ref].type not in ("gauge", "enum")):
                    raise ValueError(f"column {c.name}: {key} {ref!r} is not a gauge or enum column")
        metrics = [c.metric for c in self.columns if c.metric] + [
            c.utilisation.metric for c in self.columns if c.utilisation
        ]
        for r in self.ratios:
            for key in ("numerator", "denominator"):
                ref = by_name.get(getattr(r, key))
                if ref is None or ref.type != "gauge" or ref.metric is None:
                    raise ValueError(
                        f"ratio {r.metric}: {key} {getattr(r, key)!r} is not a gauge column with a metric"
                    )
            metrics.append(r.metric)
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"table {self.name}: two columns or ratios give the same metric")
        # A gauge read only to scale another (entPhySensorPrecision) needs no metric of its own.
        helpers = {c.precision_from for c in self.columns} | {
            c.scale_from.column for c in self.columns if c.scale_from
        }
        for c in self.columns:
            if c.type in ("counter32", "counter64", "gauge") and c.metric is None and not c.fallback_only:
                if c.type == "gauge" and c.name in helpers:
                    continue
                raise ValueError(f"column {c.name}: a {c.type} column needs a `metric` name")
        return self

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


class ColumnPatch(_M):
    """A column of a `merge: true` table: the keys given replace the inherited column's."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    oid: str | None = None
    type: ColumnType | None = None
    metric: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    scale: float | None = None
    offset: float | None = None
    fallback: str | None = None
    fallback_only: bool | None = None
    utilisation: Utilisation | None = None
    states: dict[int, str] | None = None
    state_changes: bool | None = None
    sentinels: tuple[int, ...] | None = None
    scale_from: ScaleFrom | None = None
    precision_from: str | None = None
    valid_when: ValidWhen | None = None

    @field_validator("oid")
    @classmethod
    def _oid(cls, v: str | None) -> str | None:
        if v is not None:
            parse_oid(v)
        return v


class TablePatch(_M):
    """`merge: true`: changes the inherited table of the same name instead of replacing it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    merge: Literal[True]
    row_label: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    row_name_column: str | None = None
    row_name_fallback: str | None = None
    index: tuple[str, ...] | None = None
    row_name_format: str | None = None
    columns: tuple[ColumnPatch, ...] = ()
    drop_columns: tuple[str, ...] = ()
    ratios: tuple[Ratio, ...] | None = None


def _table_kind(v: Any) -> str:
    return "patch" if isinstance(v, dict) and v.get("merge") else "table"


AnyTable = Annotated[
    Annotated[Table, Tag("table")] | Annotated[TablePatch, Tag("patch")], Discriminator(_table_kind)
]


class Trap(_HasOid):
    """A vendor notification that sets one row's state (`traps:` of a profile).

    `oid` is the notification's snmpTrapOID value. The row is the instance (OID suffix) of
    the first varbind under `index_from` (a column OID; unset: any column of `table`), read
    as the row's whole index (ifIndex.ontId). The row gets `state` (a state name of the
    table's `state_changes` column) with `cause` as the change's detail."""

    table: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    state: str = Field(min_length=1)
    index_from: str | None = None
    cause: str = Field("", max_length=200)

    @field_validator("index_from")
    @classmethod
    def _index_oid(cls, v: str | None) -> str | None:
        if v is not None:
            parse_oid(v)
        return v


class RawProfile(_M):
    """A profile file as written: its tables may be patches of inherited ones."""

    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    description: str = ""
    extends: str | None = None
    scalars: tuple[Scalar, ...] = ()
    tables: tuple[AnyTable, ...] = ()
    traps: tuple[Trap, ...] = ()


class Profile(_M):
    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    description: str = ""
    extends: str | None = None
    scalars: tuple[Scalar, ...] = ()
    tables: tuple[Table, ...] = ()
    traps: tuple[Trap, ...] = ()

    def trap(self, oid: OID) -> Trap | None:
        """The profile's trap whose snmpTrapOID is `oid`."""
        return next((t for t in self.traps if t.oid_tuple == oid), None)

    @property
    def uptime_scalar(self) -> Scalar | None:
        """sysUpTime: how counter resets are told from wraps."""
        for s in self.scalars:
            if s.oid_tuple == (1, 3, 6, 1, 2, 1, 1, 3, 0):
                return s
        return None


def _line_of(node: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """The 1-based line of the YAML node at a validation error's location (the deepest found)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if str(k.value) == str(part)), None)
            if nxt is None:  # the key itself is wrong (extra, misspelt): its own line
                nxt = next((k for k, _ in node.value if str(k.value) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
        if nxt is None:
            continue  # a union's tag ("table", "patch") or a key the file does not have
        node, line = nxt, nxt.start_mark.line + 1
    return line


def _error_of(exc: ValidationError) -> tuple[tuple[Any, ...], str, str]:
    """(location, dotted key without union tags, message) of a validation error's first problem."""
    e = exc.errors(include_url=False)[0]
    loc = tuple(e["loc"])
    key = ".".join(str(p) for p in loc if p not in ("table", "patch"))
    return loc, key, str(e["msg"]).removeprefix("Value error, ")


class _Source:
    """Where a raw profile came from: its file and YAML nodes, to name lines in errors."""

    def __init__(self, path: str, node: yaml.Node | None) -> None:
        self.path, self.node = path, node

    def table_line(self, i: int) -> int | None:
        return _line_of(self.node, ("tables", i))


def _merge_table(base: Table, patch: TablePatch, src: _Source, i: int) -> Table:
    """The inherited table changed by a `merge: true` patch (validated as a whole table)."""
    data = base.model_dump(exclude_unset=True)
    data.pop("columns")
    for key in ("row_label", "row_name_column", "row_name_fallback", "index", "row_name_format", "ratios"):
        if key in patch.model_fields_set:
            data[key] = getattr(patch, key)
    columns = {c.name: c.model_dump(exclude_unset=True) for c in base.columns}
    for name in patch.drop_columns:
        if name not in columns:
            raise ProfileError(
                src.path,
                f"no inherited column {name!r} to drop",
                _line_of(src.node, ("tables", i, "drop_columns")),
                f"tables.{i}.drop_columns",
            )
        del columns[name]
    for c in patch.columns:
        columns[c.name] = columns.get(c.name, {}) | c.model_dump(exclude_unset=True)
    data["columns"] = list(columns.values())
    try:
        return Table.model_validate(data)
    except ValidationError as exc:
        _, key, msg = _error_of(exc)
        raise ProfileError(
            src.path, f"{msg} (table {base.name!r} after merge)", src.table_line(i), f"tables.{i}.{key}"
        ) from exc


def _merge(base: Profile, child: RawProfile, src: _Source) -> Profile:
    scalars = {s.name: s for s in base.scalars} | {s.name: s for s in child.scalars}
    tables = {t.name: t for t in base.tables}
    for i, t in enumerate(child.tables):
        if isinstance(t, TablePatch):
            inherited = tables.get(t.name)
            if inherited is None:
                raise ProfileError(
                    src.path,
                    f"`merge: true` but {base.name!r} has no table {t.name!r}",
                    src.table_line(i),
                    f"tables.{i}.name",
                )
            tables[t.name] = _merge_table(inherited, t, src, i)
        else:
            tables[t.name] = t
    _check_joins(list(tables.values()), child, src)
    # A trap of the same name replaces the inherited one.
    traps = {t.name: t for t in base.traps} | {t.name: t for t in child.traps}
    _check_traps(tables, child, src)
    return Profile(
        name=child.name,
        description=child.description or base.description,
        extends=None,
        scalars=tuple(scalars.values()),
        tables=tuple(tables.values()),
        traps=tuple(traps.values()),
    )


def _check_traps(tables: dict[str, Table], child: RawProfile, src: _Source) -> None:
    """A trap names a table of the profile, with a `state_changes` column that has its state."""
    for i, trap in enumerate(child.traps):
        t = tables.get(trap.table)
        key, reason = "", ""
        if t is None:
            key, reason = "table", f"trap {trap.name}: no table {trap.table!r} in the profile"
        else:
            col = next((c for c in t.columns if c.state_changes), None)
            if col is None:
                key, reason = "table", f"trap {trap.name}: table {t.name} has no `state_changes` column"
            elif trap.state not in col.states.values():
                known = ", ".join(dict.fromkeys(col.states.values()))
                key, reason = "state", f"trap {trap.name}: {trap.state!r} is no state of {col.name} ({known})"
        if reason:
            raise ProfileError(src.path, reason, _line_of(src.node, ("traps", i, key)), f"traps.{i}.{key}")


def _check_joins(tables: list[Table], child: RawProfile, src: _Source) -> None:
    """A `{table[part]}` of a row_name_format names a table polled before this one."""
    for n, t in enumerate(tables):
        for name, part in format_fields(t.row_name_format or ""):
            if part is None or name in {u.name for u in tables[:n]}:
                continue
            i = next((i for i, c in enumerate(child.tables) if c.name == t.name), None)
            raise ProfileError(
                src.path,
                f"table {t.name}: row_name_format joins {name!r}, which is no table polled before it",
                src.table_line(i) if i is not None else None,
                f"tables.{i}.row_name_format" if i is not None else "row_name_format",
            )


def _load_file(path: Path | resources.abc.Traversable) -> tuple[RawProfile, _Source]:
    src = _Source(str(path), None)
    try:
        text = path.read_text(encoding="utf-8")
        src.node = yaml.compose(text)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise ProfileError(src.path, f"cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(src.path, "not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ProfileError(src.path, f"not valid YAML: {getattr(exc, 'problem', None) or exc}", line) from exc
    if not isinstance(data, dict):
        raise ProfileError(src.path, "a profile is a mapping (name:, tables:, ...)", 1)
    try:
        return RawProfile.model_validate(data), src
    except ValidationError as exc:
        loc, key, msg = _error_of(exc)
        raise ProfileError(src.path, msg, _line_of(src.node, loc), key) from exc


def load_profiles(extra_dir: Path | None = None) -> dict[str, Profile]:
    """Built-in profiles plus those in `extra_dir` (which win on a name clash), `extends` resolved.

    Raises ProfileError naming the file, line and key of the first problem."""
    raw: dict[str, tuple[RawProfile, _Source]] = {}
    builtin = resources.files("collector.snmp") / "profiles"
    for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            p, src = _load_file(entry)
            raw[p.name] = (p, src)
    if extra_dir is not None:
        if not extra_dir.is_dir():
            raise ProfileError(
                str(extra_dir), "snmp.profiles_dir is not a directory", None, "snmp.profiles_dir"
            )
        for path in sorted(extra_dir.glob("*.y*ml")):
            p, src = _load_file(path)
            raw[p.name] = (p, src)
    resolved: dict[str, Profile] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> Profile:
        if name in resolved:
            return resolved[name]
        p, src = raw[name]
        if name in chain:
            raise ProfileError(
                src.path,
                f"`extends` loops: {' -> '.join((*chain, name))}",
                _line_of(src.node, ("extends",)),
                "extends",
            )
        if p.extends is None:
            out = _merge(Profile(name=p.name), p, src)
        elif p.extends not in raw:
            raise ProfileError(
                src.path,
                f"extends unknown profile {p.extends!r}",
                _line_of(src.node, ("extends",)),
                "extends",
            )
        else:
            out = _merge(resolve(p.extends, (*chain, name)), p, src)
        resolved[name] = out
        return out

    for name in raw:
        resolve(name, ())
    return resolved


def _device_lines(source: Path) -> dict[str, int]:
    """Device id -> the line of its `profile` key (else of its entry) in an inventory file."""
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if source.suffix.lower() == ".csv":
        out: dict[str, int] = {}
        lines = text.splitlines()
        header = [h.strip() for h in (lines[0].split(",") if lines else [])]
        if "id" in header:
            col = header.index("id")
            for n, line in enumerate(lines[1:], 2):
                cells = line.split(",")
                if len(cells) > col:
                    out.setdefault(cells[col].strip(), n)
        return out
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if isinstance(root, yaml.MappingNode):
        root = next((v for k, v in root.value if k.value == "devices"), None)
    out = {}
    if isinstance(root, yaml.SequenceNode):
        for entry in root.value:
            if not isinstance(entry, yaml.MappingNode):
                continue
            keys = {str(k.value): (k, v) for k, v in entry.value}
            if "id" in keys:
                at = keys.get("profile", keys["id"])[0]
                out.setdefault(str(keys["id"][1].value), at.start_mark.line + 1)
    return out


def inventory_profile_problems(
    devices: Iterable[Any], profiles: dict[str, Profile], source: Path | None
) -> list[ProfileError]:
    """A ProfileError (inventory file, line, key `profile`) for every device whose `profile:`
    names no loaded profile: a misspelt name is an error, never a silent fallback to generic.
    A `kind` without a profile of its name uses `generic` (kinds are also labels)."""
    bad = [d for d in devices if d.profile is not None and d.profile not in profiles]
    if not bad:
        return []
    lines = _device_lines(source) if source is not None else {}
    known = ", ".join(sorted(profiles))
    return [
        ProfileError(
            str(source) if source is not None else "inventory",
            f"device {d.id!r}: no profile {d.profile!r} (profiles: {known})",
            lines.get(d.id),
            "profile",
        )
        for d in bad
    ]


def unknown_profiles(inv: Any, profiles: dict[str, Profile], source: Path | None) -> None:
    """Raise InventoryError for the first device whose `profile:` names no profile (the
    poller then keeps its previous inventory, as for any broken edit)."""
    from collector.inventory import InventoryError

    problems = inventory_profile_problems(inv.devices, profiles, source)
    if problems:
        p = problems[0]
        where = f"line {p.line}: profile" if p.line is not None else "profile"
        raise InventoryError(p.source, where, p.reason)


class ProfileSource:
    """The profiles in use and a signature of `snmp.profiles_dir`'s files (name, size, mtime),
    so a changed, added or removed profile file is read again without a restart."""

    def __init__(self, extra_dir: Path | None) -> None:
        self.extra_dir = extra_dir
        self.signature = self._signature()
        self.profiles = load_profiles(extra_dir)

    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        if self.extra_dir is None:
            return ()
        out = []
        try:
            for path in sorted(self.extra_dir.glob("*.y*ml")):
                st = path.stat()
                out.append((path.name, st.st_size, st.st_mtime_ns))
        except OSError:
            return (("?", -1, -1),)
        return tuple(out)

    def changed(self) -> bool:
        return self._signature() != self.signature

    def refresh(self) -> bool:
        """Read the profiles again if their files changed; True when new ones are in use.
        A broken edit raises ProfileError once (until the files change again) and the
        profiles in use stay."""
        sig = self._signature()
        if sig == self.signature:
            return False
        self.signature = sig
        self.profiles = load_profiles(self.extra_dir)
        return True
