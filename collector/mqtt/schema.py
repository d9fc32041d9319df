"""Payload schema v1 of a probe's measurement batch (docs/payload-v1.md), and its checks.

Parsing and type checks run in one pass inside pydantic-core (Rust); every rejection is
classified into one reason from a closed set, so /metrics and the dead-letter topics
say *why* a message was refused.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Final, Literal, NotRequired, get_args, get_origin, get_type_hints

import annotated_types
import msgspec
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config

# pydantic needs typing_extensions' TypedDict on Python < 3.12.
from typing_extensions import TypedDict, is_typeddict

PROBE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_PROBE_ID_RE: Final = re.compile(PROBE_ID_PATTERN)
# An agent instance id: printable by construction (letters, digits, '_', '-'), 1 to 64.
INSTANCE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
_INSTANCE_RE: Final = re.compile(INSTANCE_PATTERN)
Technology = Literal["2G", "3G", "4G", "5G", "FTTH", "xDSL", "cable"]
TECHNOLOGIES: Final = ("2G", "3G", "4G", "5G", "FTTH", "xDSL", "cable")

# Every reason a message can be refused for; the dead-letter topic is <prefix>/<reason>.
REJECT_REASONS: Final = (
    "too_large",
    "not_json",
    "non_finite",
    "missing_field",
    "wrong_type",
    "unsupported_version",
    "unknown_metric",
    "out_of_range",
    "invalid_value",
    "future_ts",
    "too_late",
    "topic_mismatch",
    "unknown_probe",
    "bad_topic",
    "internal_error",
    "store_rejected",
    "too_many_series",
)

_MS_MAX: Final = 2**53  # beyond any plausible epoch-ms, and exact in a float64


# Value types by unit, with the allowed range of docs/payload-v1.md.
_Ms = Annotated[float, Field(ge=0, le=600_000)]
_Ratio = Annotated[float, Field(ge=0, le=1)]
_Bps = Annotated[float, Field(ge=0, le=1e12)]


# TypedDicts validated by pydantic-core rather than BaseModels: the same checks, but no
# Python object per measurement beyond the dicts the JSON becomes (about 20x faster,
# which is the whole ingest budget; see bench/ingest.py).
@with_config(ConfigDict(extra="forbid", strict=True, allow_inf_nan=False))
class Metrics(TypedDict, total=False):
    """The metric values of one measurement; units are in the names."""

    rtt_ms: _Ms
    loss_ratio: _Ratio
    jitter_ms: _Ms
    dl_bps: _Bps
    ul_bps: _Bps
    dns_ms: _Ms
    access_time_ms: _Ms
    access_failed: _Ratio
    rsrp_dbm: Annotated[float, Field(ge=-160, le=-30)]
    rsrq_db: Annotated[float, Field(ge=-40, le=10)]
    sinr_db: Annotated[float, Field(ge=-30, le=50)]


METRIC_NAMES: Final = tuple(Metrics.__annotations__)
_EpochMs = Annotated[int, Field(ge=0, le=_MS_MAX)]


@with_config(ConfigDict(strict=True, allow_inf_nan=False))
class Measurement(TypedDict):
    """One test result: when (ms since the Unix epoch, UTC), against what, over which network."""

    ts: _EpochMs
    target: Annotated[str, Field(min_length=1, max_length=255)]
    technology: Technology
    operator: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
    metrics: Metrics  # at least one value: checked in parse() (cheaper than a per-item validator)


@with_config(ConfigDict(strict=True, allow_inf_nan=False))
class MeasurementBatch(TypedDict):
    """One MQTT message: a probe's batch of measurements (schema v1)."""

    v: Literal[1]
    probe_id: Annotated[str, Field(pattern=PROBE_ID_PATTERN)]
    seq: _EpochMs
    # The agent's queue instance id (random, made with its queue): with it, (probe_id,
    # instance, seq) identifies the batch; without it, (probe_id, seq) and the content do.
    instance: NotRequired[Annotated[str, Field(pattern=INSTANCE_PATTERN)]]
    sent_ts: NotRequired[_EpochMs]
    clock_offset_ms: NotRequired[Annotated[float, Field(ge=-86_400_000, le=86_400_000)]]
    clock_synced: NotRequired[bool]
    measurements: Annotated[list[Measurement], Field(min_length=1, max_length=100_000)]


_BATCH: Final = TypeAdapter(MeasurementBatch)


def validate_batch(obj: object) -> MeasurementBatch:
    """Check the structure and types of decoded JSON data (e.g. from the HTTPS path); raises
    ValidationError. `check_batch` adds the checks that need context (probe, clock)."""
    return _BATCH.validate_python(obj)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused: a reason from REJECT_REASONS and a human explanation."""

    reason: str
    detail: str


_TYPE_REASONS: Final = {
    "json_invalid": "not_json",
    "finite_number": "non_finite",
    "missing": "missing_field",
    "extra_forbidden": "unknown_metric",
    "greater_than_equal": "out_of_range",
    "greater_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "too_short": "out_of_range",
    "too_long": "out_of_range",
    "string_too_short": "out_of_range",
    "string_too_long": "out_of_range",
    "value_error": "out_of_range",
    "string_pattern_mismatch": "invalid_value",
    "literal_error": "invalid_value",
}


def classify(exc: ValidationError) -> Rejection:
    """Map pydantic's first error to one of REJECT_REASONS, keeping its location and message."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc) or "(message)"
    etype = err["type"]
    if etype == "literal_error" and loc == ("v",):
        reason = "unsupported_version"
    else:
        # *_type and *_parsing errors (a string where a number belongs, ...) are wrong types.
        reason = _TYPE_REASONS.get(etype, "wrong_type")
    return Rejection(reason, f"{where}: {err['msg']}")


def probe_id_of_topic(topic: str, topic_filter: str) -> str | None:
    """The probe id standing at the filter's '+' level, or None if the topic does not fit."""
    t_parts = topic.split("/")
    f_parts = topic_filter.split("/")
    if f_parts and f_parts[0].startswith("$share"):
        f_parts = f_parts[2:]  # "$share/<group>/..." subscribes to the rest
    if len(t_parts) != len(f_parts):
        return None
    probe_id = None
    for t, f in zip(t_parts, f_parts, strict=True):
        if f == "+":
            if probe_id is None:
                probe_id = t
        elif f != t:
            return None
    if probe_id is None or not _PROBE_ID_RE.match(probe_id):
        return None
    return probe_id


def topic_rejection(topic: str, size: int, topic_filter: str, max_payload_bytes: int) -> Rejection:
    """Why a message is refused before its payload is read: its size first, then a topic
    outside the filter (no probe id at its '+' level)."""
    if size > max_payload_bytes:
        return Rejection("too_large", f"{size} bytes > limit {max_payload_bytes}")
    return Rejection("bad_topic", f"topic {topic[:200]!r} does not match {topic_filter!r}")


def parse(
    topic: str,
    payload: bytes,
    *,
    topic_filter: str,
    now_ms: int,
    max_payload_bytes: int,
    max_future_ms: int,
    max_measurements: int,
    known_probes: Container[str],
    max_late_ms: int | None = None,
) -> MeasurementBatch | Rejection:
    """Validate one message completely; return the batch, or why it is refused.

    `known_probes` holds the registered probe ids.
    """
    topic_probe = probe_id_of_topic(topic, topic_filter) if len(payload) <= max_payload_bytes else None
    if topic_probe is None:
        return topic_rejection(topic, len(payload), topic_filter, max_payload_bytes)
    try:
        batch = _BATCH.validate_json(payload)
    except ValidationError as exc:
        return classify(exc)
    why = check_batch(
        batch,
        expected_probe_id=topic_probe,
        now_ms=now_ms,
        max_future_ms=max_future_ms,
        max_measurements=max_measurements,
        known_probes=known_probes,
        max_late_ms=max_late_ms,
    )
    return batch if why is None else why


def check_batch(
    batch: MeasurementBatch,
    *,
    expected_probe_id: str,
    now_ms: int,
    max_future_ms: int,
    max_measurements: int,
    known_probes: Container[str],
    max_late_ms: int | None = None,
) -> Rejection | None:
    """The checks beyond types that every path (MQTT, HTTPS) applies to a typed batch."""
    probe_id = batch["probe_id"]
    measurements = batch["measurements"]
    if probe_id != expected_probe_id:
        return Rejection("topic_mismatch", f"payload probe_id {probe_id!r} != topic's {expected_probe_id!r}")
    if len(measurements) > max_measurements:
        return Rejection("out_of_range", f"{len(measurements)} measurements > limit {max_measurements}")
    if probe_id not in known_probes:
        return Rejection("unknown_probe", f"probe {probe_id!r} is not registered")
    newest = 0
    oldest = _MS_MAX
    for i, m in enumerate(measurements):
        if not m["metrics"]:
            return Rejection("out_of_range", f"measurements.{i}.metrics: must hold at least one value")
        ts = m["ts"]
        if ts > newest:
            newest = ts
        if ts < oldest:
            oldest = ts
    why = _unprintable_targets(measurements)
    if why is not None:
        return why
    if max_late_ms is not None and oldest < now_ms - max_late_ms:
        # Whole message: a batch is accepted or refused as one (its dead letter keeps it all).
        return Rejection(
            "too_late",
            f"measurement ts {oldest} is {(now_ms - oldest) / 1000:.0f} s old, limit {max_late_ms // 1000} s",
        )
    if newest > now_ms + max_future_ms:
        return Rejection(
            "future_ts",
            f"measurement ts {newest} is {(newest - now_ms) / 1000:.0f} s ahead of the server clock",
        )
    return None


def unprintable_at(text: str) -> int:
    """Index of the first character of `text` that is not printable text, or -1.

    Printable as Python's `str.isprintable` says: no Unicode control (U+0000..U+001F,
    U+007F..U+009F), format (bidi overrides, ...), surrogate, private-use, unassigned or
    separator character other than the ASCII space. Why: such labels end up in the store
    (PostgreSQL refuses U+0000 in text, every driver refuses lone surrogates), in CSV
    exports, logs and the page, where they break, hide or disguise what is shown.
    """
    if text.isprintable():
        return -1
    return next(i for i, c in enumerate(text) if not c.isprintable())


def _unprintable_targets(measurements: list[Measurement]) -> Rejection | None:
    for i, m in enumerate(measurements):
        target = m["target"]
        at = unprintable_at(target)
        if at >= 0:
            return Rejection(
                "invalid_value",
                f"measurements.{i}.target: must be printable text; U+{ord(target[at]):04X} at character {at}",
            )
    return None


# -- the columnar form and the fast decoder -------------------------------------------------
#
# A batch as the pipeline takes it: per measurement its stream key, its timestamp and a
# tuple of every metric in METRIC_NAMES order (NaN where not measured). Lists of tuples, not
# dicts: the pipeline turns them into numpy columns in one call per flush.


@dataclass(slots=True)
class Decoded:
    """A valid batch in columnar form (docs/payload-v1.md's fields, one list per column)."""

    probe_id: str
    seq: int
    keys: list[tuple[str, str, str]]  # (target, technology, operator) per measurement
    ts: list[int]
    values: list[tuple[float, ...]]  # METRIC_NAMES order; NaN = not measured
    newest_ts: int
    oldest_ts: int
    clock_offset_ms: float | None = None
    clock_synced: bool | None = None
    instance: str | None = None
    digest: str = ""  # content digest, set by the pipeline for a batch without an instance id
    seq_conflict: bool = False  # set by the pipeline: a seen seq with other content

    def __len__(self) -> int:
        return len(self.ts)


_NAN: Final = float("nan")
# A measurement with no metric at all: the fast decoder fills absent metrics with this very
# NaN object, and tuple comparison checks identity first, so `_EMPTY in values` finds one.
_EMPTY_VALUES: Final = (_NAN,) * len(METRIC_NAMES)


def to_decoded(batch: MeasurementBatch) -> Decoded:
    """The columnar form of a batch validated by pydantic (HTTPS path, slow path)."""
    ms = batch["measurements"]
    ts = [m["ts"] for m in ms]
    return Decoded(
        probe_id=batch["probe_id"],
        seq=batch["seq"],
        keys=[(m["target"], m["technology"], m["operator"]) for m in ms],
        ts=ts,
        values=[tuple(m["metrics"].get(name, _NAN) for name in METRIC_NAMES) for m in ms],  # type: ignore[misc]
        newest_ts=max(ts),
        oldest_ts=min(ts),
        clock_offset_ms=batch.get("clock_offset_ms"),
        clock_synced=batch.get("clock_synced"),
        instance=batch.get("instance"),
    )


def _msgspec_type(hint: Any, field: str) -> Any:
    """The msgspec equivalent of a pydantic-annotated type of the schema above.

    Derived, not written twice, so the two decoders cannot drift apart. Regex patterns are
    not translated (msgspec's `re.search` lets `$` match before a final newline, the Rust
    regex of pydantic does not): the fast path checks those fields itself (_FAST_PATTERNS).
    """
    if get_origin(hint) is Annotated:
        base, *extras = get_args(hint)
        kw: dict[str, Any] = {}
        for info in extras:
            for c in getattr(info, "metadata", ()):
                if isinstance(c, annotated_types.Ge):
                    kw["ge"] = c.ge
                elif isinstance(c, annotated_types.Le):
                    kw["le"] = c.le
                elif isinstance(c, annotated_types.MinLen):
                    kw["min_length"] = c.min_length
                elif isinstance(c, annotated_types.MaxLen):
                    kw["max_length"] = c.max_length
                elif getattr(c, "pattern", None) is not None and field in _FAST_PATTERNS:
                    pass
                else:
                    raise TypeError(f"schema field {field}: constraint {c!r} has no fast-path twin")
        inner = _msgspec_type(base, field)
        return Annotated[inner, msgspec.Meta(**kw)] if kw else inner
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        return list[_msgspec_type(item, field)]  # type: ignore[misc]
    if is_typeddict(hint):
        return _msgspec_struct(hint)
    return hint


def _msgspec_struct(td: Any) -> type[msgspec.Struct]:
    hints = get_type_hints(td, include_extras=True)
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
    forbid = td.__pydantic_config__.get("extra") == "forbid"
    for name, hint in hints.items():
        # __required_keys__ cannot see NotRequired through string annotations (this module
        # has `from __future__ import annotations`); the raw annotation can.
        raw = td.__annotations__[name]
        text = getattr(raw, "__forward_arg__", raw)
        optional = not td.__total__ or (isinstance(text, str) and text.startswith("NotRequired["))
        if get_origin(hint) is NotRequired:
            (hint,) = get_args(hint)
        typ = _msgspec_type(hint, name)
        if not optional:
            fields.append((name, typ))
        elif td is Metrics:
            fields.append((name, typ, _NAN))  # absent metric = NaN (see _EMPTY_VALUES)
        else:
            # UNSET, not None: an explicit JSON null stays a type error, as in pydantic.
            fields.append((name, typ | msgspec.UnsetType, msgspec.UNSET))
    # gc=False: these structs hold only strings, numbers and other such structs, so no
    # cycle can run through them; the garbage collector need not track them.
    return msgspec.defstruct(
        f"Fast{td.__name__}", fields, forbid_unknown_fields=forbid, kw_only=True, gc=False
    )


_FAST_PATTERNS: Final = {"probe_id", "operator", "instance"}  # checked by decode() instead
_FAST_BATCH: Final = msgspec.json.Decoder(_msgspec_struct(MeasurementBatch))
_OPERATOR_RE: Final = re.compile(r"[a-z0-9_-]{1,32}")
_good_operators: set[str] = set()
_keys_of = attrgetter("target", "technology", "operator")
_ts_of = attrgetter("ts")
_metrics_of = attrgetter("metrics")
_astuple = msgspec.structs.astuple


def decode(
    topic: str,
    payload: bytes,
    *,
    topic_filter: str,
    now_ms: int,
    max_payload_bytes: int,
    max_future_ms: int,
    max_measurements: int,
    known_probes: Container[str],
    max_late_ms: int | None = None,
) -> Decoded | Rejection:
    """`parse`, returning the columnar form; the same decisions, several times faster.

    The common case (a valid batch without string escapes) is decoded by msgspec into
    structs generated from the TypedDicts above and checked here; anything the fast path
    does not accept goes through `parse`, which alone decides and explains refusals. So
    the fast path can only ever accept what `parse` accepts (a property test holds them
    equal on generated payloads).
    """
    if b"\\" not in payload and len(payload) <= max_payload_bytes:
        # Escapes are rare and their corner cases (lone surrogates, ...) are where JSON
        # decoders differ: those payloads take the slow path.
        topic_probe = probe_id_of_topic(topic, topic_filter)
        try:
            fast = _FAST_BATCH.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            fast = None
        if fast is not None and topic_probe is not None:
            decoded = _fast_checked(
                fast, topic_probe, now_ms, max_future_ms, max_measurements, known_probes, max_late_ms
            )
            if decoded is not None:
                return decoded
    result = parse(
        topic,
        payload,
        topic_filter=topic_filter,
        now_ms=now_ms,
        max_payload_bytes=max_payload_bytes,
        max_future_ms=max_future_ms,
        max_measurements=max_measurements,
        known_probes=known_probes,
        max_late_ms=max_late_ms,
    )
    return result if isinstance(result, Rejection) else to_decoded(result)


def _fast_checked(
    fast: Any,
    topic_probe: str,
    now_ms: int,
    max_future_ms: int,
    max_measurements: int,
    known_probes: Container[str],
    max_late_ms: int | None,
) -> Decoded | None:
    """check_batch on the fast structs; None when anything is off (then parse explains)."""
    ms = fast.measurements
    probe_id = fast.probe_id
    if probe_id != topic_probe or len(ms) > max_measurements or probe_id not in known_probes:
        return None
    keys = list(map(_keys_of, ms))
    for target in {k[0] for k in keys}:
        if not target.isprintable():
            return None
    for op in {k[2] for k in keys}:
        if op not in _good_operators:
            if not _OPERATOR_RE.fullmatch(op):
                return None
            if len(_good_operators) < 10_000:  # bounded: operators are few
                _good_operators.add(op)
    values = list(map(_astuple, map(_metrics_of, ms)))
    if _EMPTY_VALUES in values:
        return None
    ts = list(map(_ts_of, ms))
    newest, oldest = max(ts), min(ts)
    if (max_late_ms is not None and oldest < now_ms - max_late_ms) or newest > now_ms + max_future_ms:
        return None
    offset = fast.clock_offset_ms
    synced = fast.clock_synced
    instance = fast.instance
    if instance is msgspec.UNSET:
        instance = None
    elif not _INSTANCE_RE.fullmatch(instance):
        return None
    return Decoded(
        probe_id=probe_id,
        seq=fast.seq,
        keys=keys,
        ts=ts,
        values=values,
        newest_ts=newest,
        oldest_ts=oldest,
        clock_offset_ms=None if offset is msgspec.UNSET else offset,
        clock_synced=None if synced is msgspec.UNSET else synced,
        instance=instance,
    )
