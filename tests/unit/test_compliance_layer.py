"""compliance/ speaks no HTTP: no module of it imports FastAPI, Starlette or the api package,
directly or through anything it imports. (The import contracts in CI say the same; this is
the cheap net under them.)"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPLIANCE = ROOT / "compliance"
MODULES = sorted(
    "compliance" + ("" if p.stem == "__init__" else f".{p.stem}") for p in COMPLIANCE.glob("*.py")
)
FORBIDDEN = ("fastapi", "starlette", "api")

# Run in a fresh interpreter: a finder first on the meta path refuses the forbidden packages,
# so an import of one anywhere below the module under test raises ImportError naming it.
BLOCKER = """
import importlib.abc, sys
FORBIDDEN = {forbidden!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"blocked import of {{name}}")
        return None
sys.meta_path.insert(0, Block())
import importlib
for name in {modules!r}:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
assert not leaked, leaked
print("ok", len({modules!r}))
"""


def _run(modules: list[str]) -> subprocess.CompletedProcess[str]:
    code = BLOCKER.format(forbidden=FORBIDDEN, modules=modules)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_compliance_module_is_listed() -> None:
    assert {"compliance.profiles", "compliance.evaluate", "compliance.report", "compliance.kpi"} <= set(
        MODULES
    )


def test_compliance_imports_without_fastapi_starlette_or_api() -> None:
    done = _run(MODULES)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"ok {len(MODULES)}"


def test_the_blocker_does_refuse_an_http_module() -> None:
    # The net catches what it should: the HTTP side of the exports needs FastAPI.
    done = _run(["api.export"])
    assert done.returncode != 0
    assert "blocked import of" in done.stderr


@pytest.mark.parametrize("path", sorted(COMPLIANCE.glob("*.py")), ids=lambda p: p.name)
def test_no_compliance_module_names_an_http_package(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name}:{node.lineno} imports {name}"
