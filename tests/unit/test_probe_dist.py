"""The slim agent distribution (netqos-probe): no tie to the server, Python 3.9 syntax and
library, the payload constants equal to the server's schema, and a lazy `netqos probe`."""

from __future__ import annotations

import ast
import asyncio
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, get_args, get_origin, get_type_hints

import annotated_types
import pytest

from probes.agent import compat, payload
from probes.agent.config import Technology

AGENT = Path(__file__).resolve().parents[2] / "probes" / "agent"
# The package, and the zipapp's start-up file (it runs on the probe's Python too).
MODULES = [*sorted(AGENT.glob("*.py")), AGENT / "packaging" / "pyz_main.py"]
SERVER_PACKAGES = ("collector", "compliance", "netqos", "api", "alerts", "probes.simulate")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_every_agent_module_is_listed() -> None:
    names = {p.stem for p in MODULES}
    assert {"agent", "config", "payload", "compat", "publisher", "queue"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_agent_imports_nothing_from_the_server(path: Path) -> None:
    for node in ast.walk(_tree(path)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not any(name == p or name.startswith(p + ".") for p in SERVER_PACKAGES), (
                f"{path.name}:{node.lineno} imports {name}"
            )


# Python 3.10+ names the agent must not use (it runs on 3.9): module attribute -> since.
_NEWER = {
    ("asyncio", "timeout"): "3.11",
    ("asyncio", "TaskGroup"): "3.11",
    ("itertools", "pairwise"): "3.10",
    ("datetime", "UTC"): "3.11",
    ("typing", "Self"): "3.11",
    ("typing", "TypeAlias"): "3.10",
    ("typing", "ParamSpec"): "3.10",
    ("contextlib", "aclosing"): "3.10",
}


def _typeish(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    builtin = ("int", "float", "str", "bytes")
    return isinstance(node, ast.Name) and (node.id[:1].isupper() or node.id in builtin)


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "__main__.py"], ids=lambda p: p.name)
def test_agent_sticks_to_python_3_9(path: Path) -> None:
    """What ruff's py39 target (probes/agent/pyproject.toml) does not see: library names and
    `X | Y` evaluated at run time (annotations are strings under `from __future__`)."""
    tree = _tree(path)
    future = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and n.names[0].name == "annotations"
        for n in tree.body
    )
    assert future or path.name == "__init__.py", f"{path.name}: needs `from __future__ import annotations`"
    annotations = {
        id(sub)
        for n in ast.walk(tree)
        if isinstance(n, (ast.AnnAssign, ast.arg, ast.FunctionDef, ast.AsyncFunctionDef))
        for ann in [n.annotation if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) else n.returns]
        if ann is not None
        for sub in ast.walk(ann)
    }
    for node in ast.walk(tree):
        # compat.py is where the newer names are used, behind a sys.version_info check.
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and path.name != "compat.py":
            since = _NEWER.get((node.value.id, node.attr))
            assert since is None, f"{path.name}:{node.lineno}: {node.value.id}.{node.attr} is Python {since}+"
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                since = _NEWER.get((node.module, alias.name))
                assert since is None, f"{path.name}:{node.lineno}: {alias.name} is Python {since}+"
        if isinstance(node, ast.keyword) and node.arg in ("slots", "kw_only"):
            raise AssertionError(f"{path.name}:{node.lineno}: dataclass {node.arg}= is Python 3.10+")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "zip":
            assert not any(k.arg == "strict" for k in node.keywords), f"{path.name}:{node.lineno}: zip strict"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in annotations:
            # A `|` outside annotations between names that look like types is a runtime union.
            sides = [node.left, node.right]
            typeish = [s for s in sides if _typeish(s)]
            assert len(typeish) < 2, f"{path.name}:{node.lineno}: runtime `X | Y` of types is Python 3.10+"


def test_model_fields_evaluate_on_python_3_9() -> None:
    """pydantic evaluates the annotations of model fields at import (strings under `from
    __future__`): on 3.9 an `X | None` there fails, so the models say Optional[X]."""
    for path in MODULES:
        tree = _tree(path)
        if not any(isinstance(n, ast.ImportFrom) and n.module == "pydantic" for n in tree.body):
            continue
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for stmt in cls.body:
                if isinstance(stmt, ast.AnnAssign):
                    ors = [n for n in ast.walk(stmt.annotation) if isinstance(n, ast.BinOp)]
                    assert not ors, f"{path.name}:{stmt.lineno}: {cls.name} field uses `|`"


def test_distribution_metadata() -> None:
    text = (AGENT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'name = "netqos-probe"' in text and 'requires-python = ">=3.9"' in text
    deps = text.split("dependencies = [")[1].split("]")[0]
    for heavy in ("numpy", "numba", "fastapi", "psycopg", "uvicorn", "influxdb", "apprise"):
        assert heavy not in deps


# -- payload constants: equal to the server's schema --------------------------------------


def _server_ranges() -> dict[str, tuple[float, float]]:
    from collector.mqtt.schema import Metrics

    out: dict[str, tuple[float, float]] = {}
    for name, hint in get_type_hints(Metrics, include_extras=True).items():
        assert get_origin(hint) is Annotated
        lo = hi = math.nan
        for meta in get_args(hint)[1:]:
            for m in getattr(meta, "metadata", [meta]):
                if isinstance(m, annotated_types.Ge):
                    lo = float(m.ge)  # type: ignore[arg-type]
                if isinstance(m, annotated_types.Le):
                    hi = float(m.le)  # type: ignore[arg-type]
        out[name] = (lo, hi)
    return out


def test_payload_constants_equal_the_server_schema() -> None:
    from collector.mqtt import schema

    assert payload.METRIC_NAMES == schema.METRIC_NAMES
    assert {k: (float(a), float(b)) for k, (a, b) in payload.METRIC_RANGES.items()} == _server_ranges()
    assert payload.PROBE_ID_PATTERN == schema.PROBE_ID_PATTERN
    assert payload.INSTANCE_PATTERN == schema.INSTANCE_PATTERN
    assert payload.TECHNOLOGIES == schema.TECHNOLOGIES == get_args(Technology)


# Limits from docs/payload-v1.md, written by hand: on, just inside and just outside each.
@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("rsrp_dbm", -160, True),
        ("rsrp_dbm", -160.001, False),
        ("rsrp_dbm", -30, True),
        ("rsrp_dbm", -29.999, False),
        ("rsrq_db", -40.0, True),
        ("rsrq_db", 10.001, False),
        ("sinr_db", 50, True),
        ("sinr_db", -30.001, False),
        ("loss_ratio", 0, True),
        ("loss_ratio", 1, True),
        ("loss_ratio", 1.0001, False),
        ("loss_ratio", -0.0001, False),
        ("rtt_ms", 600_000, True),
        ("rtt_ms", 600_000.001, False),
        ("dl_bps", 1e12, True),
        ("dl_bps", 1.000001e12, False),
        ("rtt_ms", math.nan, False),
        ("rtt_ms", math.inf, False),
        ("loss_ratio", True, False),  # a bool is not a number in the schema (strict)
        ("rtt_ms", "12", False),
        ("latency_ms", 12, False),  # not a metric of v1
    ],
)
def test_metric_ok_limits(name: str, value: object, ok: bool) -> None:
    assert payload.metric_ok(name, value) is ok


def test_metric_ok_agrees_with_the_server_on_the_limits() -> None:
    from pydantic import TypeAdapter, ValidationError

    from collector.mqtt.schema import Metrics

    check = TypeAdapter(Metrics)
    for name, (lo, hi) in payload.METRIC_RANGES.items():
        for value in (lo, hi, lo - 1e-6 * max(1, abs(lo)), hi + 1e-6 * max(1, abs(hi))):
            try:
                check.validate_python({name: value})
                server = True
            except ValidationError:
                server = False
            assert payload.metric_ok(name, value) is server, (name, value)


# -- compat: the 3.11 asyncio parts, for 3.9 and 3.10 ---------------------------------------


async def test_timeout_backport_raises_builtin_timeout_error() -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        async with compat.timeout_backport(0.05):
            await asyncio.sleep(5)
    assert time.monotonic() - t0 < 4  # cut short (generous bound: a loaded CI machine)


async def test_timeout_backport_lets_a_quick_block_finish() -> None:
    async with compat.timeout_backport(5):
        await asyncio.sleep(0)
    async with compat.timeout_backport(None):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)  # nothing fires later


async def test_timeout_backport_keeps_an_outer_cancellation() -> None:
    async def body() -> None:
        async with compat.timeout_backport(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_run_together_cancels_the_others_on_failure() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(compat.run_together(forever(), fail()), timeout=4)
    assert cancelled.is_set()


def test_pairwise() -> None:
    assert compat.pairwise([1.0, 3.0, 2.0]) == [(1.0, 3.0), (3.0, 2.0)]
    assert compat.pairwise([1.0]) == []


# -- the server's command stays light for `netqos probe` -------------------------------------


def test_netqos_probe_help_loads_neither_store_nor_numba() -> None:
    code = (
        "import sys\n"
        "from netqos.cli import main\n"
        "try:\n    main(['probe', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numba', 'numpy', 'collector', 'fastapi', 'psycopg', 'api', 'pydantic_settings', 'alerts'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage: netqos probe" in out.stdout
    assert "HEAVY []" in out.stdout, out.stdout[-400:]
