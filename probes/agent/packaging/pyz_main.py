"""Start-up of the single-file agent, ``python3 netqos-probe.pyz --config probe.yaml``.

`make probe-dist` copies this file to the archive's ``__main__.py``; the archive holds the
agent and every dependency, installed for one platform and Python version. Python cannot
import compiled extensions (pydantic-core, orjson) from inside a zip file, so on first run
the archive is unpacked once into a private cache directory named after its SHA-256, and
runs from there; a later run of the same archive finds it ready (an updated archive gets a
new directory). The cache directory: $NETQOS_PROBE_CACHE, else $XDG_CACHE_HOME/netqos-probe,
else ~/.cache/netqos-probe. Standard library only: nothing else is importable yet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path


def _cache_root() -> Path:
    explicit = os.environ.get("NETQOS_PROBE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "netqos-probe"


def _digest(archive: Path) -> str:
    h = hashlib.sha256()
    with archive.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def unpack(archive: Path) -> Path:
    """The directory holding the archive's contents, unpacked on first use (atomically)."""
    root = _cache_root()
    target = root / _digest(archive)
    if (target / ".complete").exists():
        return target
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        (tmp / ".complete").write_text("ok\n", encoding="ascii")
        try:
            tmp.rename(target)
        except OSError:
            # Another start unpacked it meanwhile (the rename found a directory): use theirs.
            if not (target / ".complete").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def main() -> int:
    """Unpack (once), put the unpacked tree first on the import path, run the agent."""
    archive = Path(__file__).resolve().parent
    if not archive.is_file():  # run from an unpacked tree (tests): nothing to do
        here = str(archive)
    else:
        here = str(unpack(archive))
        sys.path[:] = [p for p in sys.path if Path(p).resolve() != archive]
    sys.path.insert(0, here)
    from probes.agent.agent import main as agent_main

    return agent_main()


if __name__ == "__main__":
    sys.exit(main())
