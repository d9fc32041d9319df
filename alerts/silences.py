"""Silences and maintenance windows: label matchers, start, end, creator, comment.

Both mute notifications of the incidents they match while they are in force. A
maintenance window also takes its minutes out of availability: `maintenance_windows`
returns them for an entity's labels and a period, for the availability computation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from collector.store.db import Connection
from collector.store.store import Store
from ground.matchers import Matcher, all_match, parse_matchers, stored_matcher

Kind = Literal["silence", "maintenance"]


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    kind: str
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    creator: str
    comment: str
    created_ms: int
    expired_ms: int | None

    def active(self, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.ends_ms

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all_match(self.matchers, labels)

    @property
    def refused(self) -> str:
        """Why a stored matcher is refused ("" when none is): the silence then matches nothing."""
        return next((m.refused for m in self.matchers if m.refused), "")

    def limited_to(self, operator: str) -> bool:
        """Whether it selects only `operator`'s data: it has `operator="<operator>"` and no
        other `operator="..."` (what an operator key may create, see and expire)."""
        named = {m.value for m in self.matchers if m.name == "operator" and m.op == "="}
        return named == {operator}

    def status(self, now_ms: int) -> str:
        if now_ms < self.starts_ms:
            return "pending"
        return "active" if now_ms < self.ends_ms else "expired"


def _from_row(row: Sequence[object]) -> Silence:
    sid, kind, matchers, starts, ends, creator, comment, created, expired = row
    ms = orjson.loads(str(matchers))
    return Silence(
        int(str(sid)),
        str(kind),
        tuple(stored_matcher(m, f"{kind} {sid}") for m in ms),
        int(str(starts)),
        int(str(ends)),
        str(creator),
        str(comment),
        int(str(created)),
        None if expired is None else int(str(expired)),
    )


_COLUMNS = "id, kind, matchers, starts_ms, ends_ms, creator, comment, created_ms, expired_ms"


class SilenceRepo:
    """Silences and maintenance windows in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        kind: Kind,
        matchers: Sequence[str],
        starts_ms: int,
        ends_ms: int,
        creator: str,
        comment: str,
        now_ms: int,
    ) -> Silence:
        """Store a silence (matchers in text form; MatcherError when one is bad)."""
        parsed = parse_matchers(matchers)
        if not parsed:
            raise ValueError("at least one matcher is needed (a silence of everything is a mistake)")
        if ends_ms <= starts_ms:
            raise ValueError("the end must be after the start")
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO silences (kind, matchers, starts_ms, ends_ms, creator, comment, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    kind,
                    orjson.dumps([m.as_dict() for m in parsed]).decode(),
                    starts_ms,
                    ends_ms,
                    creator,
                    comment,
                    now_ms,
                ),
            )
            sid = int(cur.fetchone()[0])
        found = self.get(sid)
        assert found is not None
        return found

    def expire(self, silence_id: int, now_ms: int) -> Silence | None:
        """End a silence now (kept, for history); None when there is no such silence."""
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE silences SET ends_ms = least(ends_ms, greatest(starts_ms, ?)), expired_ms = ?"
                " WHERE id = ? AND expired_ms IS NULL",
                (now_ms, now_ms, silence_id),
            )
        return self.get(silence_id)

    def get(self, silence_id: int) -> Silence | None:
        row = (
            self.store.reader()
            .execute(f"SELECT {_COLUMNS} FROM silences WHERE id=?", (silence_id,))
            .fetchone()
        )
        return None if row is None else _from_row(row)

    def find(
        self, kind: Kind | None = None, *, since_ms: int = 0, limit: int = 1000, operator: str | None = None
    ) -> list[Silence]:
        """Silences (of `kind`) that end after `since_ms`, newest first; with `operator`, only
        those limited to it (`Silence.limited_to`)."""
        where, args = "ends_ms > ?", [since_ms]
        if kind is not None:
            where += " AND kind = ?"
            args.append(kind)  # type: ignore[arg-type]
        if operator is None:
            cur = self.store.reader().execute(
                f"SELECT {_COLUMNS} FROM silences WHERE {where} ORDER BY id DESC LIMIT ?", (*args, limit)
            )
            return [_from_row(r) for r in cur]
        cur = self.store.reader().execute(
            f"SELECT {_COLUMNS} FROM silences WHERE {where} ORDER BY id DESC", args
        )
        out: list[Silence] = []
        for r in cur:
            s = _from_row(r)
            if s.limited_to(operator):
                out.append(s)
                if len(out) >= limit:
                    break
        return out

    @staticmethod
    def in_force(conn: Connection, now_ms: int) -> list[Silence]:
        """Silences and maintenance windows in force at `now_ms`."""
        cur = conn.execute(
            f"SELECT {_COLUMNS} FROM silences WHERE starts_ms <= ? AND ends_ms > ?", (now_ms, now_ms)
        )
        return [_from_row(r) for r in cur]


def maintenance_windows(
    store: Store, labels: Mapping[str, str], from_ms: int, to_ms: int
) -> list[tuple[int, int]]:
    """Maintenance windows matching `labels` (pass the entity's labels and `entity`), clipped to
    [from_ms, to_ms), merged where they overlap, in time order: minutes to leave out of availability."""
    cur = store.reader().execute(
        f"SELECT {_COLUMNS} FROM silences WHERE kind = 'maintenance' AND starts_ms < ? AND ends_ms > ?",
        (to_ms, from_ms),
    )
    spans = sorted(
        (max(s.starts_ms, from_ms), min(s.ends_ms, to_ms)) for s in map(_from_row, cur) if s.matches(labels)
    )
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged
