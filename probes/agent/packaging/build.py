"""Build the slim agent's two artefacts (what `make probe-dist` runs):

* ``netqos_probe-<version>-py3-none-any.whl``: the agent alone, pure Python, any platform;
  ``pip install`` brings its few dependencies.
* ``netqos-probe.pyz``: one file holding the agent *and* its dependencies, installed for one
  platform and Python version (this interpreter's by default; ``--pip-target`` passes e.g.
  ``--platform manylinux2014_aarch64 --python-version 3.11`` to pip for a Raspberry Pi).
  Run with ``python3 netqos-probe.pyz --config probe.yaml`` (see pyz_main.py).
* ``wheelhouse/``: the wheel and every dependency's wheel for that same platform, for an
  installation without network access: ``pip install --no-index --find-links wheelhouse netqos-probe``.

Standard library only, with pip; not part of either distribution (this directory has no
``__init__.py``).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipapp
from pathlib import Path

import tomllib

AGENT_DIR = Path(__file__).resolve().parent.parent
REPO = AGENT_DIR.parent.parent


def server_version() -> str:
    """The version of the repository's pyproject.toml: the agent ships with the server's."""
    with (REPO / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def build(out: Path, *, pip_target: list[str], quiet: bool = True) -> tuple[Path, Path]:
    """Build the wheel, the wheelhouse and the zipapp into `out`; returns the wheel and zipapp."""
    out.mkdir(parents=True, exist_ok=True)
    q = ["--quiet"] if quiet else []
    for old in [*out.glob("netqos_probe-*.whl"), out / "netqos-probe.pyz"]:
        old.unlink(missing_ok=True)
    house = out / "wheelhouse"
    shutil.rmtree(house, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="netqos-probe-build-") as tmp_s:
        tmp = Path(tmp_s)
        # Built from a copy: an in-place build leaves build/ and *.egg-info in the package.
        src = tmp / "src"
        src.mkdir()
        for f in [*AGENT_DIR.glob("*.py"), AGENT_DIR / "pyproject.toml"]:
            shutil.copy2(f, src / f.name)
        (src / "VERSION").write_text(server_version() + "\n", encoding="utf-8")
        _pip("wheel", *q, "--no-deps", "-w", str(out), str(src))
        (wheel,) = out.glob("netqos_probe-*.whl")
        # Dependencies resolved and fetched once, into the wheelhouse (for the target platform);
        # the zipapp's tree is installed from there without the index.
        _pip("download", *q, "--only-binary=:all:", *pip_target, "-d", str(house), str(wheel))
        tree = tmp / "pyz"
        offline = ["--no-index", "--find-links", str(house), "--only-binary=:all:", *pip_target]
        _pip("install", *q, *offline, "--target", str(tree), str(wheel))
        shutil.copy2(Path(__file__).with_name("pyz_main.py"), tree / "__main__.py")
        shutil.rmtree(tree / "bin", ignore_errors=True)
        for cache in list(tree.rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)
        pyz = out / "netqos-probe.pyz"
        zipapp.create_archive(tree, pyz, interpreter="/usr/bin/env python3", compressed=True)
    return wheel, pyz


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("dist"), help="output directory (default dist)")
    p.add_argument("--pip-target", default="", help="extra pip arguments choosing the zipapp's platform")
    args = p.parse_args()
    wheel, pyz = build(args.out, pip_target=shlex.split(args.pip_target))
    for f in (wheel, pyz):
        print(f"{f}  {f.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
