"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and a deliberate violation breaks them.

lint-imports runs on a tiny tree of empty packages named as ours, with the project's own
contracts copied beside it, and one import added per case that the layers forbid.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# Every root package the contracts name, and every module they name, as an empty module.
TREE = [
    "ground/__init__.py",
    "ground/aio.py",
    "collector/__init__.py",
    "collector/pipeline.py",
    "alerts/__init__.py",
    "alerts/engine.py",
    "api/__init__.py",
    "api/app.py",
    "api/export.py",
    "api/compliance.py",
    "api/kpi.py",
    "api/compliance_settings.py",
    "netqos/__init__.py",
    "netqos/cli.py",
    "probes/__init__.py",
    "probes/agent/__init__.py",
    "probes/agent/agent.py",
]

# What the layers allow: downwards, and the composition (netqos) reaching everything.
ALLOWED = {
    "netqos/cli.py": "import api.app\nimport alerts.engine\nimport collector.pipeline\nimport ground.aio\n",
    "api/app.py": "import fastapi\nimport api.compliance\nimport alerts.engine\nimport ground.aio\n",
    "api/compliance.py": "import collector.pipeline\nimport api.compliance_settings\n",
    "alerts/engine.py": "import collector.pipeline\nimport ground.aio\n",
    "collector/pipeline.py": "import ground.aio\nimport numpy\n",
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
    for rel in TREE:
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(ALLOWED.get(rel, "") + extra.get(rel, ""), encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(_importlinter_section(), encoding="utf-8")
    return tmp_path


def test_the_allowed_imports_keep_every_contract(tmp_path: Path) -> None:
    r = _lint(_tree(tmp_path, {}))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 kept, 0 broken" in r.stdout


@pytest.mark.parametrize(
    ("where", "line", "broken"),
    [
        ("collector/pipeline.py", "import netqos.cli\n", "Layers:"),
        ("alerts/engine.py", "from api import app\n", "No room imports the api"),
        ("collector/pipeline.py", "import api.compliance\n", "No room imports the api"),
        ("ground/aio.py", "import collector\n", "ground imports nothing of ours"),
        ("probes/agent/agent.py", "import ground.aio\n", "The probe agent imports"),
        ("probes/agent/agent.py", "import collector.pipeline\n", "The probe agent imports"),
        ("api/compliance.py", "import fastapi\n", "Compliance imports no FastAPI"),
        # Indirectly, through a module that does (the chain is reported).
        ("api/kpi.py", "import api.export\n", "Compliance imports no FastAPI"),
    ],
)
def test_a_deliberate_violation_fails_lint_imports(
    tmp_path: Path, where: str, line: str, broken: str
) -> None:
    extra = {where: line, "api/export.py": "import starlette.responses\n"}
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
