"""`netqos serve --roles`: parsed and validated against ALL_ROLES; which roles need a broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ground.errors import ConfigError
from netqos.cli import main
from netqos.config import Settings
from netqos.roles import ALL_ROLES, parse_roles
from netqos.serve import ServiceContext, serve
from netqos.service import free_port, port_is_free


def test_parse_roles() -> None:
    assert parse_roles("api,ingest,poller,alerts,tiers") == ALL_ROLES
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
        await serve(_settings(tmp_path), roles=frozenset({"ingest"}), install_signals=False)


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
        serve(settings, roles=frozenset({"api"}), install_signals=False, extra_tasks=[check_then_stop]),
        60,
    )
    assert seen == [True]


@pytest.mark.parametrize(
    ("roles", "present", "absent"),
    [
        # API replicas do not roll tiers (any number may run); the roller is its own role.
        ({"api"}, {"api", "flusher"}, {"tiers", "alerting", "mqtt-consumer", "snmp-poller"}),
        ({"tiers", "alerts"}, {"tiers", "alerting", "flusher"}, {"mqtt-consumer", "probe-health"}),
        # `netqos serve`: every role in one process, the roller included.
        (set(ALL_ROLES), {"api", "tiers", "alerting", "mqtt-consumer", "probe-health"}, set()),
    ],
)
async def test_each_role_runs_its_own_tasks(
    tmp_path: Path, roles: set[str], present: set[str], absent: set[str]
) -> None:
    settings = _settings(tmp_path, mqtt={"embedded": {"port": free_port()}})
    names: set[str] = set()

    async def look_then_stop(ctx: ServiceContext) -> None:
        await asyncio.sleep(0.2)
        names.update(t.get_name() for t in asyncio.all_tasks())
        ctx.stop.set()

    await asyncio.wait_for(
        serve(settings, roles=frozenset(roles), install_signals=False, extra_tasks=[look_then_stop]), 60
    )
    assert present <= names and not absent & names, names
