"""The broker file edits of `netqos probes enroll` / `revoke`: the ACL entries and the password
file, checked against text written out by hand."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from netqos.enroll import (
    EnrollError,
    ProbeRequest,
    remove_acl_entry,
    remove_mqtt_account,
    set_acl_entry,
    set_mqtt_account,
)

BASE = (
    "# production rules\npattern write netqos/v1/probes/%u/measurements\n\nuser netqos-ingest\ntopic read x\n"
)


def _entry(pid: str) -> str:
    return (
        f"# -- probe {pid} (netqos probes enroll; removed by netqos probes revoke)\n"
        f"user {pid}\n"
        f"topic write netqos/v1/probes/{pid}/measurements\n"
        f"topic write netqos/v1/probes/{pid}/status\n"
        f"topic write netqos/v1/probes/{pid}/agent\n"
        f"topic read netqos/v1/probes/{pid}/schedule\n"
    )


def test_acl_entries_are_appended_replaced_and_removed_one_by_one(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(BASE)
    acl.chmod(0o640)
    set_acl_entry(acl, "p1")
    set_acl_entry(acl, "p2")
    set_acl_entry(acl, "p1")  # again: replaced, not doubled
    assert acl.read_text() == BASE + "\n" + _entry("p2") + "\n" + _entry("p1")
    assert stat.S_IMODE(acl.stat().st_mode) == 0o640  # the broker's group keeps reading it
    assert remove_acl_entry(acl, "p2") is True
    assert acl.read_text() == BASE + "\n" + _entry("p1")
    assert remove_acl_entry(acl, "p2") is False
    assert remove_acl_entry(acl, "p1") is True
    assert acl.read_text() == BASE


def test_acl_entry_needs_an_installed_acl(tmp_path: Path) -> None:
    with pytest.raises(EnrollError, match="no ACL file"):
        set_acl_entry(tmp_path / "missing", "p1")


def test_password_file_holds_hashes_only_and_keeps_other_accounts(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("netqos-ingest:$7$101$abc$def\n")
    set_mqtt_account(passwd, "p1", "secret-one-1234567890")
    set_mqtt_account(passwd, "p1", "secret-two-1234567890")  # a new password replaces the old
    lines = passwd.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["netqos-ingest", "p1"]
    assert lines[0] == "netqos-ingest:$7$101$abc$def"
    assert lines[1].startswith("p1:$7$") and "secret" not in passwd.read_text()  # PBKDF2-SHA512
    assert remove_mqtt_account(passwd, "p1") is True
    assert passwd.read_text() == "netqos-ingest:$7$101$abc$def\n"
    assert remove_mqtt_account(passwd, "p1") is False


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("probe_id", "a" * 64, None),  # the longest id allowed
        ("probe_id", "a" * 65, "at most 64"),
        ("probe_id", "th/16021", "letters, digits"),
        ("probe_id", "th+1", "letters, digits"),
        ("probe_id", "NETQOS-ops", "reserved"),
        ("commune", " ", "commune is required"),
        ("operator", "Viettel", "operator"),
        ("operator", "v" * 33, "operator"),
        ("technology", "4g", "technology"),
        ("technology", "FTTH", None),
    ],
)
def test_request_checks(field: str, value: str, reason: str | None) -> None:
    base = {"probe_id": "th-16021-p001", "commune": "16021", "village": "", "operator": "viettel"}
    req = ProbeRequest(**{**base, "technology": "4G", field: value})
    if reason is None:
        req.check()
    else:
        with pytest.raises(EnrollError, match=reason):
            req.check()
