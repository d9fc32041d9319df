"""Numbers in uploaded reports, written the Vietnamese or the English way (tabular.number_of).

Every expected value is written out by hand: "3.760.000" in a Vietnamese file is three
million seven hundred and sixty thousand, never 3.76.
"""

from __future__ import annotations

import pytest

from collector.inventory.tabular import Errors, Table, number_format_of, number_of


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("12.000", "vi", 12_000.0),
        ("3.760.000", "vi", 3_760_000.0),
        ("1.234,5", "vi", 1_234.5),
        ("12,5", "vi", 12.5),
        ("12000", "vi", 12_000.0),
        ("-1.234,5", "vi", -1_234.5),
        ("12.000", "en", 12.0),
        ("3,760,000", "en", 3_760_000.0),
        ("1,234.5", "en", 1_234.5),
        # auto: each cell by its own evidence when it has some
        ("3.760.000", "auto", 3_760_000.0),  # '.' twice: only thousands are grouped twice
        ("1.234,5", "auto", 1_234.5),  # the last mark is the decimal one
        ("1,234.5", "auto", 1_234.5),
        ("12,5", "auto", 12.5),  # one ',' and not three digits after it: a decimal comma
        ("12.5", "auto", 12.5),
        ("12", "auto", 12.0),
        # plain (coordinates): Python's syntax, as before
        ("105.601", "plain", 105.601),
        ("12.000", "plain", 12.0),
    ],
)
def test_numbers_by_format(text: str, fmt: str, expected: float) -> None:
    assert number_of(text, fmt) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "fmt", "fragment"),
    [
        (
            "12.000",
            "auto",
            "ambiguous: 12000 if '.' is the thousands mark (vi), 12 if it is the decimal point",
        ),
        (
            "1,234",
            "auto",
            "ambiguous: 1.234 if ',' is the decimal mark (vi), 1234 if it is the thousands mark",
        ),
        ("12.5", "vi", "not a number written the vi way"),  # '.' groups thousands: 12.5 is malformed
        ("1,234.5", "vi", "not a number written the vi way"),
        ("1.234,5", "en", "not a number written the en way"),
        ("12.34.5", "vi", "not a number written the vi way"),  # groups are three digits
        ("1_000", "plain", "not a number"),
    ],
)
def test_ambiguous_or_malformed_numbers_are_refused(text: str, fmt: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        number_of(text, fmt)  # type: ignore[arg-type]


def test_json_numbers_are_taken_as_they_are() -> None:
    assert number_of(12.5, "vi") == 12.5 and number_of(3_760_000, "auto") == 3_760_000.0


def _table(*rows: dict[str, str]) -> Table:
    return Table(["commune", "x", "y"], [(i + 2, r) for i, r in enumerate(rows)])


def test_a_file_declares_its_format_by_its_values() -> None:
    # "3.760.000" on line 3 settles the file as Vietnamese: "12.000" on line 2 is twelve thousand.
    t = _table({"commune": "", "x": "12.000", "y": ""}, {"commune": "", "x": "", "y": "3.760.000"})
    errors = Errors()
    fmt = number_format_of(t, ["x", "y"], "auto", errors)
    assert (fmt, errors.total) == ("vi", 0)
    assert number_of("12.000", fmt) == 12_000.0
    # Nothing tells: stays auto, and "12.000" is then refused (never guessed)
    errors = Errors()
    assert (
        number_format_of(_table({"commune": "", "x": "12.000", "y": "7"}), ["x", "y"], "auto", errors)
        == "auto"
    )
    # A declared format wins over the values
    assert number_format_of(t, ["x", "y"], "en", Errors()) == "en"


def test_a_file_writing_numbers_both_ways_is_refused_with_both_places() -> None:
    t = _table({"commune": "", "x": "3.760.000", "y": "1"}, {"commune": "", "x": "2", "y": "12.5"})
    errors = Errors()
    number_format_of(t, ["x", "y"], "auto", errors)
    assert errors.total == 1
    e = errors.items[0]
    assert (e.line, e.column) == (3, "y") and "line 2 (x) writes '3.760.000' the vi way" in e.message
