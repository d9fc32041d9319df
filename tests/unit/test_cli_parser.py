"""The `netqos` command line's parser: `--config` before or after the subcommand, a
description on every subcommand, and one version source."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest

import netqos
from netqos.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.yaml", "serve"],
        ["serve", "--config", "x.yaml"],
        ["serve", "--roles", "api", "--config", "x.yaml"],
        ["--config", "x.yaml", "rollup", "roll"],
        ["rollup", "roll", "--config", "x.yaml"],
        ["rules", "--config", "x.yaml", "check", "r.yaml"],
        ["maintenance", "add", "--from", "0", "--to", "60", "--config", "x.yaml"],
    ],
)
def test_config_is_taken_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).config == Path("x.yaml")


def test_no_config_is_none_and_after_the_subcommand_wins() -> None:
    p = build_parser()
    assert p.parse_args(["serve"]).config is None
    # Given twice, the one nearer the end counts, as for any repeated option.
    assert p.parse_args(["--config", "a.yaml", "serve", "--config", "b.yaml"]).config == Path("b.yaml")
    assert p.parse_args(["--config", "a.yaml", "serve"]).config == Path("a.yaml")


def test_probe_hands_its_config_to_the_agent() -> None:
    # `netqos probe --config probe.yaml`: the agent's own file, not the server's configuration.
    args, extra = build_parser().parse_known_args(["probe", "--config", "probe.yaml"])
    assert args.config is None and [*extra, *args.args] == ["--config", "probe.yaml"]


def _subcommands(
    parser: argparse.ArgumentParser, path: str = "netqos"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((f"{path} {name}", sub))
                out += _subcommands(sub, f"{path} {name}")
    return out


def test_every_subcommand_has_a_description() -> None:
    subs = _subcommands(build_parser())
    # 14 commands, and 9 nested ones: rules check; probes enroll, revoke; rollup rebuild, roll,
    # prune; maintenance add, delete, list.
    assert len(subs) == 14 + 9
    missing = [name for name, sub in subs if not (sub.description or "").strip()]
    assert missing == []
    serve = dict(subs)["netqos serve"].format_help()
    for role in ("ingest", "poller", "alerts", "api"):
        assert f"{role} (" in serve


def test_one_version_source() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert netqos.__version__ == version
    agent = (REPO / "probes/agent/pyproject.toml").read_text(encoding="utf-8")
    assert (
        'dynamic = ["version"]' in agent and "\nversion =" not in agent.split("[tool.setuptools.dynamic]")[0]
    )
