"""One compliance answer: every profile that applies to a period and scope, judged and grouped.

Shared by `GET /api/v1/compliance` and the monthly report (compliance/report.py); the API
encodes it as it is: its dataclasses have the response model's fields, in its order
(api/schemas.py ComplianceResponse). A request it cannot answer (a malformed
period, an unknown commune, a profile not in force) raises `QueryError` with the reason the
client is told.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.mqtt.schema import TECHNOLOGIES
from collector.store.store import Store
from collector.store.units import UnitRepo
from compliance.evaluate import Scope, evaluate_columns, overall
from compliance.profiles import Profile, Standards, parse_period

_PASSED = {"pass": True, "fail": False}  # Row.passed of a status; None for the others


class QueryError(ValueError):
    """A compliance question that cannot be answered as asked; the message says why."""


@dataclass(slots=True)
class ProfileRef:
    id: str
    version: int
    kind: str
    reference: str
    title_vi: str
    title_en: str
    technologies: list[str]
    effective_from: str
    effective_from_unverified: bool = False
    effective_from_note: str = ""


# No __slots__ on the classes an answer has thousands of: the API encodes them with orjson,
# which reads an instance's __dict__ about three times as fast as it reads slots one by one.
@dataclass
class Row:
    """One (operator, commune, technology, indicator) verdict, as the API and the report show it."""

    operator: str
    commune: str
    commune_name: str
    technology: str
    profile: str
    profile_version: int
    indicator: str
    name_vi: str
    name_en: str
    stat: str
    unit: str
    value: float | None
    op: str
    limit: float | None
    threshold: float | None
    status: str
    passed: bool | None
    insufficient_data: bool
    sample_count: int
    min_samples: int
    unverified: bool
    # Tuples: immutable, one shared by every row of the indicator alike.
    unverified_what: tuple[str, ...] = ()
    approximate: bool = False
    not_checked: tuple[str, ...] = ()
    note: str = ""


@dataclass
class Group:
    operator: str
    commune: str
    commune_name: str
    technology: str
    status: str
    passed: int
    failed: int
    insufficient: int
    reason: str = ""


@dataclass(slots=True)
class NotJudged:
    technology: str
    probes: int
    reason: str


@dataclass(slots=True)
class Answer:
    period: str
    from_ms: int
    to_ms: int
    timezone: str
    filters: dict[str, str]
    profiles: list[ProfileRef]
    declared_speeds: dict[str, str]
    groups: list[Group]
    rows: list[Row]
    not_judged: list[NotJudged] = field(default_factory=list)


def profile_ref(p: Profile) -> ProfileRef:
    return ProfileRef(
        id=p.id,
        version=p.version,
        kind=p.kind,
        reference=p.reference,
        title_vi=p.title_vi,
        title_en=p.title_en,
        technologies=p.technologies,
        effective_from=p.effective_from.isoformat(),
        effective_from_unverified=p.effective_from_unverified,
        effective_from_note=p.effective_from_note,
    )


def answer(
    store: Store,
    standards: Standards,
    period_text: str,
    technology: str | None,
    operator: str | None,
    commune: str | None,
    profile_id: str | None,
) -> Answer:
    """Evaluate every profile that applies to `period_text` (YYYY, YYYY-Qn or YYYY-MM) and the
    scope; QueryError when it cannot be answered as asked."""
    try:
        period = parse_period(period_text)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    if commune is not None:
        _known_commune(store, commune)
    probe_techs = _probe_technologies(store, operator, commune)
    pairs: list[tuple[str, Profile]] = []
    unjudged: list[str] = []
    if profile_id is not None:
        prof = standards.by_id(profile_id, period.start)
        if prof is None:
            known = sorted({p.id for p in standards.profiles})
            raise QueryError(f"profile {profile_id!r} unknown or not in force; known: {', '.join(known)}")
        techs = [technology] if technology else prof.technologies
        if technology and technology not in prof.technologies:
            raise QueryError(f"profile {prof.id} covers {', '.join(prof.technologies)}, not {technology}")
        pairs = [(t, prof) for t in techs]
    else:
        techs = [technology] if technology else sorted({*standards.technologies(), *probe_techs})
        for t in techs:
            prof = standards.regulation_for(t, period.start)
            if prof is None:
                if t in probe_techs or t in TECHNOLOGIES:
                    unjudged.append(t)  # a technology the probes measure: said, not hidden
                elif technology:
                    raise QueryError(
                        f"no regulation profile covers technology {t!r} in {period.label}; "
                        f"covered: {', '.join(standards.technologies())}",
                    )
                continue
            pairs.append((t, prof))
    names = UnitRepo(store).names()
    rows: list[Row] = []
    groups: list[Group] = []
    for tech, prof in pairs:
        order, columns = evaluate_columns(store, standards, prof, period, Scope(tech, operator, commune))
        # What is our choice depends on the indicator and technology alone: worked out once each.
        marks_of: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        for ind in prof.indicators:
            marks = prof.unverified_marks(ind, standards.speeds, tech)
            marks_of[ind.id] = (
                tuple(what for what, _ in marks),
                tuple(
                    f"{what} is our choice: {note}" if note else f"{what} is our choice"
                    for what, note in marks
                    if what != "limit"  # the limit's note is the indicator's own, already in r.notes
                ),
            )
        # The note of a row: its own notes and its marks', joined once per distinct set.
        note_of: dict[tuple[str, tuple[str, ...]], str] = {}
        by_group: dict[tuple[str, str], list[str]] = {}
        # Per indicator, what every row of it shares (worked out once, not per row).
        shared = [(c, c.ind, *marks_of[c.ind.id]) for c in columns]
        for i, ((op, place), _) in enumerate(order if shared else ()):  # no verdict: no group row
            place_name = names.get(place, "")
            statuses: list[str] = []
            by_group[op, place] = statuses
            for c, ind, what, mark_notes in shared:
                notes = c.notes[i]
                note = note_of.get((ind.id, notes))
                if note is None:
                    note = note_of[ind.id, notes] = "; ".join(notes + mark_notes)
                status = c.statuses[i]
                statuses.append(status)
                rows.append(
                    Row(
                        op,
                        place,
                        place_name,
                        tech,
                        prof.id,
                        prof.version,
                        ind.id,
                        ind.name_vi,
                        ind.name_en,
                        ind.stat,
                        ind.unit,
                        c.values[i],
                        ind.op,
                        c.limits[i],
                        c.thresholds[i],
                        status,
                        _PASSED.get(status),
                        status == "insufficient_data",
                        c.counts[i],
                        c.min_samples,
                        bool(what),
                        what,
                        c.approximate[i],
                        c.not_checked[i],
                        note,
                    )
                )
        for (op, place), statuses in by_group.items():
            groups.append(
                Group(
                    operator=op,
                    commune=place,
                    commune_name=names.get(place, ""),
                    technology=tech,
                    status=overall(statuses),
                    passed=statuses.count("pass"),
                    failed=statuses.count("fail"),
                    insufficient=statuses.count("insufficient_data"),
                )
            )
    not_judged: list[NotJudged] = []
    for tech in unjudged:
        covered = ", ".join(standards.technologies())
        reason = (
            f"no regulation profile in force on {period.start.isoformat()} covers {tech} (the profiles"
            f" cover {covered}): its measurements are kept (GET /api/v1/qos) but not judged"
        )
        places = _probe_places(store, tech, operator, commune)
        not_judged.append(NotJudged(technology=tech, probes=probe_techs.get(tech, 0), reason=reason))
        for op, place in places:
            groups.append(
                Group(
                    operator=op,
                    commune=place,
                    commune_name=names.get(place, ""),
                    technology=tech,
                    status="not_judged",
                    passed=0,
                    failed=0,
                    insufficient=0,
                    reason=reason,
                )
            )
    filters = {
        k: v
        for k, v in (
            ("technology", technology),
            ("operator", operator),
            ("commune", commune),
            ("profile", profile_id),
        )
        if v is not None
    }
    speeds = standards.speeds
    return Answer(
        period=period.label,
        from_ms=period.from_ms,
        to_ms=period.to_ms,
        timezone="UTC+07:00",
        filters=filters,
        profiles=[profile_ref(p) for p in {(p.id, p.version): p for _, p in pairs}.values()],
        declared_speeds={"version": speeds.version, "source": speeds.source, **speeds.unverified},
        groups=groups,
        rows=rows,
        not_judged=not_judged,
    )


def _known_commune(store: Store, code: str) -> None:
    """QueryError naming the code unless it is an imported commune or one probes or series stand in:
    an unknown (mistyped) code must not answer an empty, good-looking report."""
    if code in UnitRepo(store).commune_codes():
        return
    conn = store.reader()
    for table in ("probes", "series"):
        if conn.execute(f"SELECT 1 FROM {table} WHERE commune = ? LIMIT 1", (code,)).fetchone():
            return
    raise QueryError(
        f"commune {code!r} is unknown: not an imported commune, nor one with probes or data"
        " (GET /api/v1/communes lists them)",
    )


def _probe_technologies(store: Store, operator: str | None, commune: str | None) -> dict[str, int]:
    """Registered probes per technology, in scope."""
    where, args = _probe_scope(operator, commune)
    sql = f"SELECT technology, count(*) FROM probes WHERE {where} GROUP BY technology"
    return {str(t): int(n) for t, n in store.reader().execute(sql, args) if t}


def _probe_places(
    store: Store, tech: str, operator: str | None, commune: str | None
) -> list[tuple[str, str]]:
    where, args = _probe_scope(operator, commune)
    sql = f"SELECT DISTINCT operator, commune FROM probes WHERE {where} AND technology = ? ORDER BY 1, 2"
    return [(str(o), str(c)) for o, c in store.reader().execute(sql, [*args, tech]) if c]


def _probe_scope(operator: str | None, commune: str | None) -> tuple[str, list[str]]:
    where, args = ["1 = 1"], []
    for name, only in (("operator", operator), ("commune", commune)):
        if only:
            where.append(f"{name} = ?")
            args.append(only)
    return " AND ".join(where), args
