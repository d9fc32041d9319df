"""`netqos serve --roles`: parsed and validated against ALL_ROLES; which roles need a broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ground.errors import ConfigError
from netqos.cli import main
from netqos.config import Settings
from netqos.service import ALL_ROLES, ServiceContext, free_port, parse_roles, port_is_free, run_service


def test_parse_roles() -> None:
    assert parse_roles("api,ingest,poller,alerts") == ALL_ROLES
    assert parse_roles(" poller , api ") == {"poller", "api"}
    with pytest.raises(ConfigError, match="unknown roles \\['alert'\\]"):
        parse_roles("api,alert")
    with pytest.raises(ConfigError, match="empty"):
        parse_roles(",")


def test_cli_refuses_an_unknown_role_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--roles", "api,pollers"]) == 2
    err = capsys.readouterr().err
    assert "--roles" in err and "pollers" in err and "'poller'" in err


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings.model_validate(
        {"store": {"sqlite_path": str(tmp_path / "n.db")}, "api": {"port": 0}, **extra}
    )


async def test_a_worker_that_ingests_needs_an_external_broker(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.host"):
        await run_service(_settings(tmp_path), roles=frozenset({"ingest"}), install_signals=False)


async def test_api_only_runs_without_any_broker(tmp_path: Path) -> None:
    settings = _settings(tmp_path, mqtt={"embedded": {"port": free_port()}})
    emb = settings.mqtt.embedded
    seen: list[bool] = []

    async def check_then_stop(ctx: ServiceContext) -> None:
        await asyncio.sleep(0.2)
        # No embedded broker was started for a process that does not ingest.
        seen.append(port_is_free(emb.host, emb.port))
        ctx.stop.set()

    await asyncio.wait_for(
        run_service(settings, roles=frozenset({"api"}), install_signals=False, extra_tasks=[check_then_stop]),
        60,
    )
    assert seen == [True]
