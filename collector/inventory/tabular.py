"""Uploaded tables (CSV with a header row, or a JSON array of objects) read with line numbers.

Every error names the line it is on (and the column when there is one), so whoever
uploaded the file can fix it in an editor. Nothing is accepted from a file that has an
error: a report or a unit list is taken whole or not at all.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_ROWS = 100_000
MAX_ERRORS = 100  # reported one by one; the rest are counted

TableFormat = Literal["csv", "json"]


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in an uploaded file: line (1-based; 0 = the file as a whole), column, message."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


class TableError(Exception):
    """The file has errors; `errors` lists up to MAX_ERRORS of them, `total` counts all."""

    def __init__(self, errors: list[RowError], total: int | None = None) -> None:
        self.errors = errors[:MAX_ERRORS]
        self.total = total if total is not None else len(errors)
        first = "; ".join(str(e) for e in self.errors[:3])
        more = f" (and {self.total - 3} more)" if self.total > 3 else ""
        super().__init__(f"{self.total} error(s): {first}{more}")


@dataclass(slots=True)
class Table:
    """The columns and (line, row) pairs of an uploaded file; values are str, or JSON scalars."""

    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


@dataclass(slots=True)
class Errors:
    """Collects row errors up to a bound, counting the rest."""

    items: list[RowError] = field(default_factory=list)
    total: int = 0

    def add(self, line: int, column: str, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_ERRORS:
            self.items.append(RowError(line, column, message))

    def raise_if_any(self) -> None:
        if self.total:
            raise TableError(self.items, self.total)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


class _Lines:
    """Line numbers of increasing positions in one text, each newline counted once: linear in
    the text, where counting from the start for every row was quadratic (a 100k-row report
    took minutes of CPU on the event loop)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def at(self, pos: int) -> int:
        if pos < self.pos:  # never in the reader below; stay correct all the same
            return _line_of(self.text, pos)
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _decode(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise TableError([RowError(line, "", f"not UTF-8 (byte {exc.start})")]) from None
    return text.removeprefix("\ufeff")  # a spreadsheet's byte-order mark


def read_csv(text: str, max_rows: int = MAX_ROWS) -> Table:
    """A CSV with a header row. Blank lines are skipped; a quoted field may span lines."""
    buf = io.StringIO(text, newline="")
    reader = csv.reader(buf)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise TableError([RowError(1, "", f"not CSV: {exc}")]) from None
    if header is None or not any(h.strip() for h in header):
        raise TableError([RowError(1, "", "empty file: expected a header row")])
    columns = [h.strip() for h in header]
    errors = Errors()
    seen: set[str] = set()
    for c in columns:
        if not c:
            errors.add(1, "", "a column without a name in the header")
        elif c in seen:
            errors.add(1, c, "column named twice in the header")
        seen.add(c)
    errors.raise_if_any()
    table = Table(columns)
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.add(line, "", f"not CSV: {exc}")
            break
        start, line = line, reader.line_num + 1
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(columns):
            errors.add(start, "", f"{len(values)} fields, the header has {len(columns)}")
            continue
        if len(table.rows) >= max_rows:
            errors.add(start, "", f"more than {max_rows} rows")
            break
        table.rows.append((start, {c: v.strip() for c, v in zip(columns, values, strict=True)}))
    errors.raise_if_any()
    return table


def read_json_rows(text: str, max_rows: int = MAX_ROWS) -> Table:
    """A JSON array of flat objects; each row's line is where its object starts."""
    decoder = json.JSONDecoder(parse_constant=_no_constant)
    lines = _Lines(text)
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise TableError([RowError(_line_of(text, pos), "", "expected a JSON array of objects")])
    pos = _skip_ws(text, pos + 1)
    table = Table([])
    columns: dict[str, None] = {}
    errors = Errors()
    first = True
    while pos < len(text) and text[pos] != "]":
        if not first:
            if text[pos] != ",":
                raise TableError([RowError(_line_of(text, pos), "", "expected ',' or ']' between rows")])
            pos = _skip_ws(text, pos + 1)
        first = False
        line = lines.at(pos)
        try:
            obj, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, ValueError) as exc:
            lineno = getattr(exc, "lineno", line)
            msg = getattr(exc, "msg", str(exc))
            raise TableError([RowError(lineno, "", f"not valid JSON: {msg}")]) from None
        except RecursionError:  # [[[[...]]]]: the rows are flat, so this is no table
            raise TableError([RowError(line, "", "not a table: JSON nested too deeply")]) from None
        pos = _skip_ws(text, end)
        if not isinstance(obj, dict):
            errors.add(line, "", "each row must be a JSON object")
            continue
        bad = [k for k, v in obj.items() if isinstance(v, dict | list)]
        if bad:
            errors.add(line, bad[0], "a value must be a string, a number, or null")
            continue
        if len(table.rows) >= max_rows:
            errors.add(line, "", f"more than {max_rows} rows")
            break
        columns.update(dict.fromkeys(obj))
        table.rows.append((line, obj))
    if pos >= len(text):
        raise TableError([RowError(_line_of(text, len(text)), "", "not valid JSON: the array is not closed")])
    if _skip_ws(text, pos + 1) != len(text):
        raise TableError([RowError(_line_of(text, pos + 1), "", "not valid JSON: text after the array")])
    errors.raise_if_any()
    table.columns = list(columns)
    return table


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def read_table(body: bytes, fmt: TableFormat, max_rows: int = MAX_ROWS) -> Table:
    """Parse an uploaded body (at most `max_rows` rows); raises TableError with line numbers."""
    text = _decode(body)
    return read_csv(text, max_rows) if fmt == "csv" else read_json_rows(text, max_rows)


def text_of(value: Any) -> str:
    """A cell as text (JSON numbers too); None and missing are ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


# How a file writes numbers (see number_of). "plain": JSON/Python syntax, '.' is the decimal
# point and nothing groups thousands (coordinates, machine-written files). "vi": '.' groups
# thousands and ',' is the decimal mark, as Vietnamese spreadsheets write them ("3.760.000",
# "1.234,5"). "en": ',' groups thousands and '.' is the decimal point ("3,760,000", "1,234.5").
# "auto": each cell by its own evidence; a cell that reads two ways ("12.000", "1,234") is
# refused. `number_format_of` settles "auto" for a whole file from all of its cells.
NumberFormat = Literal["plain", "vi", "en", "auto"]
NUMBER_FORMATS: tuple[NumberFormat, ...] = ("plain", "vi", "en", "auto")
_GROUPED_RE = {
    "vi": re.compile(r"^[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?$"),
    "en": re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$"),
}
_FORMAT_HELP = {
    "vi": "'.' groups thousands and ',' is the decimal mark (3.760.000; 1.234,5)",
    "en": "',' groups thousands and '.' is the decimal point (3,760,000; 1,234.5)",
}


def _evidence(text: str) -> Literal["vi", "en", "ambiguous", "none"]:
    """Which way a number written as `text` must be read: "vi", "en", "ambiguous" (one '.'
    or ',' followed by exactly three digits: "12.000" is 12 or twelve thousand), or "none"
    (no mark at all, or not a grouped number)."""
    s = text.lstrip("+-")
    dots, commas = s.count("."), s.count(",")
    if not dots and not commas:
        return "none"
    if dots and commas:  # the last mark is the decimal one
        return "vi" if s.rfind(",") > s.rfind(".") else "en"
    mark = "." if dots else ","
    if s.count(mark) > 1:  # only thousands are grouped more than once
        return "vi" if mark == "." else "en"
    if len(s) - s.index(mark) - 1 == 3 and s.index(mark) > 0:
        return "ambiguous"
    return "en" if mark == "." else "vi"  # a decimal mark: '.' in English, ',' in Vietnamese


def number_of(value: Any, fmt: NumberFormat = "plain") -> float | None:
    """A cell as a finite number, None when blank; raises ValueError with a readable reason.

    JSON numbers are taken as they are; text is read as `fmt` says (see NumberFormat). An
    ambiguous text under "auto" is refused, never guessed."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("a number, not true/false")
    if isinstance(value, int | float):
        x = float(value)
    elif fmt == "plain":
        try:
            x = float(str(value).strip().replace("_", "x"))  # '1_000' is not a number in a report
        except ValueError:
            raise ValueError(f"{str(value)[:40]!r} is not a number") from None
    else:
        text = str(value).strip()
        how = fmt
        if fmt == "auto":
            seen = _evidence(text)
            if seen == "ambiguous":
                mark = "." if "." in text else ","
                raise ValueError(
                    f"{text[:40]!r} is ambiguous: {_as(text, 'vi')} if {mark!r} is "
                    f"{'the thousands mark' if mark == '.' else 'the decimal mark'} (vi), "
                    f"{_as(text, 'en')} if it is "
                    f"{'the decimal point' if mark == '.' else 'the thousands mark'}"
                    " (en); nothing else in the file tells: upload with number_format=vi or en"
                )
            how = "en" if seen == "none" else seen
        if not _GROUPED_RE[how].match(text):
            raise ValueError(f"{text[:40]!r} is not a number written the {how} way: {_FORMAT_HELP[how]}")
        group, decimal = (".", ",") if how == "vi" else (",", ".")
        x = float(text.replace(group, "").replace(decimal, "."))
    if not math.isfinite(x):
        raise ValueError("a finite number")
    return x


def _as(text: str, how: Literal["vi", "en"]) -> str:
    group, decimal = (".", ",") if how == "vi" else (",", ".")
    return f"{float(text.replace(group, '').replace(decimal, '.')):g}"


def number_format_of(
    table: Table, columns: list[str], declared: NumberFormat, errors: Errors
) -> NumberFormat:
    """The way `table` writes the numbers of `columns`: `declared` unless it is "auto"; then
    from every text cell of those columns together. A file that writes numbers both ways
    (e.g. "3.760.000" on one line and "12.5" on another) is an error naming both places."""
    if declared != "auto":
        return declared
    first: dict[str, tuple[int, str, str]] = {}  # "vi" / "en" -> its first cell
    for line, row in table.rows:
        for c in columns:
            v = row.get(c)
            if isinstance(v, str) and v.strip():
                seen = _evidence(v.strip())
                if seen in ("vi", "en") and _GROUPED_RE[seen].match(v.strip()):
                    first.setdefault(seen, (line, c, v.strip()))
    if len(first) == 2:
        (l_vi, c_vi, t_vi), (l_en, c_en, t_en) = first["vi"], first["en"]
        errors.add(
            l_en,
            c_en,
            f"{t_en[:40]!r} is written the en way ({_FORMAT_HELP['en']}), but line {l_vi} ({c_vi}) "
            f"writes {t_vi[:40]!r} the vi way ({_FORMAT_HELP['vi']}): write one file one way",
        )
        return "auto"
    if "vi" in first:
        return "vi"
    return "en" if "en" in first else "auto"
