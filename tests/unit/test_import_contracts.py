"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and a deliberate violation breaks them.

lint-imports runs on a tiny tree of empty packages named as ours, with the project's own
contracts copied beside it, and one import added per case that the layers forbid.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
CONTRACTS = {c["id"]: c for c in CONFIG["contracts"]}
# The modules the contracts hold to "no FastAPI" (the compliance room, wherever it stands).
NO_HTTP = CONTRACTS["compliance-without-http"]["source_modules"]

# A few modules of each layer, and every module a contract names, as small files.
MODULES = [
    *CONFIG["root_packages"],
    "ground.aio",
    "collector.pipeline",
    "alerts.engine",
    "api.app",
    "api.export",
    "netqos.cli",
    "probes.agent",
    "probes.agent.agent",
    *(
        m
        for c in CONFIG["contracts"]
        for key in ("source_modules", "forbidden_modules")
        for m in c.get(key, [])
    ),
]

# What the layers allow: downwards, and the composition (netqos) reaching everything.
ALLOWED = {
    "netqos.cli": "import api.app\nimport alerts.engine\nimport collector.pipeline\nimport ground.aio\n",
    "api.app": "import fastapi\nimport alerts.engine\nimport ground.aio\n"
    + "".join(f"import {m}\n" for m in NO_HTTP),
    "alerts.engine": "import collector.pipeline\nimport ground.aio\n",
    "collector.pipeline": "import ground.aio\nimport numpy\n",
    **{m: "import collector.pipeline\nimport ground.aio\n" for m in NO_HTTP},
}


def _importlinter_section() -> str:
    """The [tool.importlinter] tables of pyproject.toml, as written there."""
    out: list[str] = []
    inside = False
    for line in (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            inside = line.startswith(("[tool.importlinter]", "[[tool.importlinter."))
        if inside:
            out.append(line)
    assert out, "pyproject.toml has no [tool.importlinter]"
    return "\n".join(out) + "\n"


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _tree(tmp_path: Path, extra: dict[str, str]) -> Path:
    roots = set(CONFIG["root_packages"])
    ours = {m for m in MODULES if m.split(".")[0] in roots}  # not fastapi, which a contract forbids
    packages = roots | {".".join(m.split(".")[:i]) for m in ours for i in range(1, m.count(".") + 1)}
    for name in ours | packages:
        parts = name.split(".")
        f = (
            tmp_path.joinpath(*parts, "__init__.py")
            if name in packages
            else tmp_path.joinpath(*parts[:-1], parts[-1] + ".py")
        )
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(ALLOWED.get(name, "") + extra.get(name, ""), encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(_importlinter_section(), encoding="utf-8")
    return tmp_path


def test_the_allowed_imports_keep_every_contract(tmp_path: Path) -> None:
    r = _lint(_tree(tmp_path, {}))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(CONTRACTS)} kept, 0 broken" in r.stdout


@pytest.mark.parametrize(
    ("where", "line", "broken"),
    [
        ("collector.pipeline", "import netqos.cli\n", "Layers:"),
        ("alerts.engine", "from api import app\n", "No room imports the api"),
        ("collector.pipeline", "import api.app\n", "No room imports the api"),
        ("ground.aio", "import collector\n", "ground imports nothing of ours"),
        ("probes.agent.agent", "import ground.aio\n", "The probe agent imports"),
        ("probes.agent.agent", "import collector.pipeline\n", "The probe agent imports"),
        (NO_HTTP[0], "import fastapi\n", "Compliance imports no FastAPI"),
        # Indirectly, through a module that does (the chain is reported).
        (NO_HTTP[-1], "import api.export\n", "Compliance imports no FastAPI"),
    ],
)
def test_a_deliberate_violation_fails_lint_imports(
    tmp_path: Path, where: str, line: str, broken: str
) -> None:
    extra = {where: line, "api.export": "import starlette.responses\n"}
    r = _lint(_tree(tmp_path, extra))
    assert r.returncode == 1, r.stdout + r.stderr
    broken_lines = [ln for ln in r.stdout.splitlines() if ln.endswith(" BROKEN")]
    # The contract the import breaks is among the broken ones (an import can break several:
    # a room importing the composition also reaches the api through it, for one).
    assert any(ln.startswith(broken) for ln in broken_lines), r.stdout


def test_the_project_keeps_every_contract() -> None:
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout
