"""The department's page at / in a real headless Chromium (Debian's `chromium`), screenshot saved."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import create_app
from collector.store.sqlite import SQLiteStore
from tests.department_data import VIEWER, A, seed, settings_with_keys
from tests.live_api import serve

pytestmark = pytest.mark.e2e


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("chromium is not installed: run `make test` (deploy/ci/install-system-deps.sh)")
    return path


def headless(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run; --virtual-time-budget lets the page's fetches finish first."""
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # tests run as root in CI containers
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--window-size=1280,1800",
            "--virtual-time-budget=20000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = SQLiteStore(tmp_path_factory.mktemp("page") / "netqos.db")
    seed(store)
    with serve(create_app(settings_with_keys(), store)) as url:
        yield url
    store.close()


def test_page_shows_kpis_compliance_and_incidents(base_url: str, tmp_path: Path) -> None:
    url = f"{base_url}/?period=2025-07&technology=4G#token={VIEWER}"
    r = headless(url, tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'data-state="ready"' in dom, dom[-3000:]
    # ten KPI rows, with a value computed from the inventory (BTS site sharing 1 of 3)
    assert len(re.findall(r'data-kpi="', dom)) == 10
    assert 'data-kpi="bts_site_sharing"' in dom and "33,33 %" in dom
    # the compliance table, filtered to 4G in July 2025: viettel in A passes its mean download
    assert f'data-row="viettel|{A}|4G|dl_mean"' in dom and f'data-row="vnpt|{A}|4G|ul_mean"' in dom
    assert "|5G|" not in dom
    assert "Không đạt / fail" in dom and "Chưa đủ mẫu / insufficient data" in dom
    # the incidents endpoint answers with an empty list: the page says so (no error fallback)
    assert "no open incidents" in dom and "not available" not in dom
    shot = tmp_path / "page.png"
    r = headless(url, tmp_path / "profile2", f"--screenshot={shot}")
    assert r.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    print(f"screenshot: {shot}")


def test_page_without_a_key_asks_for_one(base_url: str, tmp_path: Path) -> None:
    r = headless(f"{base_url}/", tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0
    assert "an API key is needed" in r.stdout and 'id="login"' in r.stdout and "data-kpi" not in r.stdout


def test_page_marks_unverified_limits_with_their_notes(base_url: str, tmp_path: Path) -> None:
    """FTTH speed limits rest on the example contract, QCVN 81's radio availability threshold is
    ours: the rows say so on the page, with the note, and the example contract is named above."""
    r = headless(f"{base_url}/?period=2025-07#token={VIEWER}", tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert 'data-state="ready"' in dom, dom[-3000:]

    def row(key: str) -> str:
        m = re.search(rf'<tr class="[a-z_]+" data-row="{re.escape(key)}"[^>]*>(.*?)</tr>', dom, re.S)
        assert m, key
        return m.group(0)

    for key in (f"vnpt|{A}|FTTH|dl_mean", f"vnpt|{A}|FTTH|ul_mean"):
        tr = row(key)
        assert 'data-unverified="true"' in tr and "Chưa kiểm chứng / unverified" in tr, tr
        assert "example contracted plan (100/100 Mbit/s)" in tr, tr
    ra = row(f"viettel|{A}|4G|radio_availability")
    assert 'data-unverified="true"' in ra and "Chưa kiểm chứng / unverified" in ra
    # The declared-speeds caveat above the table, and every marked row carries the mark's text.
    assert 'class="declared-unverified"' in dom and "FTTH: example contracted plan" in dom
    rows = re.findall(
        r'<tr class="[a-z_]+" data-row="[^"]+" data-unverified="(true|false)">(.*?)</tr>', dom, re.S
    )
    assert rows and all(("Chưa kiểm chứng / unverified" in body) == (flag == "true") for flag, body in rows)
