"""Field-probe agent start-up and memory: the slim ``netqos-probe`` against the agent as the
server package ships it today.

Ours: the ``netqos-probe`` wheel (``make probe-dist``; built here into a temporary directory
unless ``--dist DIR`` names an existing build) installed alone into a clean virtual
environment, run as a probe box runs it: ``netqos-probe --config probe.yaml``.

Peer: the same agent through the server's command, ``netqos probe --config probe.yaml``, from
the repository at the commit before the slim distribution (``--peer-rev``, default
``7decf32``, extracted with ``git archive``) and run with the server's own environment: the
import path every probe box had, where ``netqos`` loaded the store and numba first. The
current server command (lazy imports) is measured too, as ``server_now``.

Two figures per contestant, R runs each, alternating, medians:

* start-up: wall time of ``--check`` (import, read and validate probe.yaml, print it, exit),
  and its peak resident memory (``ru_maxrss`` of the child);
* running: resident memory (VmRSS) of the agent 3 s into a real run (one TCP test every
  0.2 s against a local listener, a broker port that refuses: it measures and queues).

Each run's ``--check`` output is compared with the peer's (same configuration printed), so
both sides do the same work. Run ``python bench/probe_agent.py`` (5 runs each, about a
minute plus the build) or ``--quick`` (2 runs). The last line is ``RESULT speedup=...``:
``speedup`` = peer ÷ ours start-up time (the headline), ``rss_ratio`` = peer ÷ ours running
memory, then every figure and ``ours_installed_mb`` (the clean environment's site-packages).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "probes" / "agent" / "packaging"))

import build as probe_build  # noqa: E402  (probes/agent/packaging/build.py)


@dataclass
class Side:
    name: str
    argv: list[str]  # the command up to (not including) --config
    cwd: Path
    env: dict[str, str]
    startup_s: list[float] = field(default_factory=list)
    startup_rss_mb: list[float] = field(default_factory=list)
    running_rss_mb: list[float] = field(default_factory=list)


def _env(extra_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    return env


def _run_peak(side: Side, cfg: Path) -> tuple[float, float, str]:
    """One `--check` run: wall seconds, the child's own peak RSS in MB (os.wait4), stdout."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*side.argv, "--config", str(cfg), "--check"], cwd=side.cwd, env=side.env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{side.name}: exit {proc.returncode}: {err.read().decode(errors='replace')[-800:]}"
            )
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def _running_rss(side: Side, cfg: Path, after_s: float = 3.0) -> float:
    """VmRSS (MB) of the agent `after_s` into a real run."""
    proc = subprocess.Popen(
        [*side.argv, "--config", str(cfg), "--log-level", "ERROR"],
        cwd=side.cwd,
        env=side.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(after_s)
        if proc.poll() is not None:
            raise RuntimeError(f"{side.name}: the agent exited early ({proc.returncode})")
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kb / 1024
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _write_config(tmp: Path, tcp_port: int, dead_port: int) -> Path:
    cfg = tmp / "probe.yaml"
    cfg.write_text(
        "probe_id: th-bench-p001\n"
        "operator: viettel\n"
        "technology: 4G\n"
        f"broker: {{host: 127.0.0.1, port: {dead_port}, reconnect_min_s: 1, reconnect_max_s: 2}}\n"
        f"queue: {{path: {tmp / 'queue.db'}}}\n"
        "tests:\n"
        f"  - {{kind: tcp, target: 127.0.0.1, port: {tcp_port}, interval_s: 0.2, count: 1}}\n",
        encoding="utf-8",
    )
    cfg.chmod(0o600)
    return cfg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _site_size_mb(venv: Path) -> float:
    (sp,) = venv.glob("lib/python3*/site-packages")
    return sum(f.stat().st_size for f in sp.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 runs each instead of 5")
    ap.add_argument("--dist", type=Path, help="an existing `make probe-dist` output (default: build one)")
    ap.add_argument("--peer-rev", default="7decf32", help="the commit whose `netqos probe` is the peer")
    args = ap.parse_args()
    runs = 2 if args.quick else 5

    with tempfile.TemporaryDirectory(prefix="bench-probe-agent-") as tmp_s:
        tmp = Path(tmp_s)
        dist = args.dist
        if dist is None:
            dist = tmp / "dist"
            print("building netqos-probe ...", flush=True)
            probe_build.build(dist, pip_target=[])
        (wheel,) = dist.glob("netqos_probe-*.whl")
        venv = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        offline = ["--no-index", "--find-links", str(dist / "wheelhouse")]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv / "bin/python"),
                "install",
                "-q",
                *offline,
                str(wheel),
            ],
            check=True,
        )
        peer_src = tmp / "peer-src"
        peer_src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", args.peer_rev],
            check=True,
            capture_output=True,
        ).stdout
        tar_path = tmp / "peer.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tf:
            tf.extractall(peer_src, filter="data")
        launcher = "import sys; from netqos.cli import main; sys.exit(main())"
        run_dir = tmp / "run"
        run_dir.mkdir()
        sides = [
            Side("ours", [str(venv / "bin/netqos-probe")], run_dir, _env()),
            Side("peer", [sys.executable, "-c", launcher, "probe"], run_dir, _env(peer_src)),
            Side("server_now", [sys.executable, "-c", launcher, "probe"], run_dir, _env(ROOT)),
        ]
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        cfg = _write_config(tmp, int(listener.getsockname()[1]), _free_port())
        try:
            # Warm-up (page cache, numba's on-disk cache for the peer): not counted.
            outputs = {s.name: _run_peak(s, cfg)[2] for s in sides}
            if len(set(outputs.values())) != 1:
                print("error: the sides printed different configurations", file=sys.stderr)
                return 1
            for i in range(runs):
                order = sides if i % 2 == 0 else list(reversed(sides))
                for side in order:
                    wall, rss, out = _run_peak(side, cfg)
                    if out != outputs[side.name]:
                        print(f"error: {side.name} printed another configuration", file=sys.stderr)
                        return 1
                    side.startup_s.append(wall)
                    side.startup_rss_mb.append(rss)
                for side in order:
                    side.running_rss_mb.append(_running_rss(side, cfg))
        finally:
            listener.close()
        installed = _site_size_mb(venv)
        shutil.rmtree(venv, ignore_errors=True)

    figures: dict[str, float] = {}
    for s in sides:
        figures[f"{s.name}_startup_s"] = statistics.median(s.startup_s)
        figures[f"{s.name}_startup_rss_mb"] = statistics.median(s.startup_rss_mb)
        figures[f"{s.name}_running_rss_mb"] = statistics.median(s.running_rss_mb)
        print(
            f"{s.name:>10}: start-up {figures[f'{s.name}_startup_s']:.3f} s"
            f" (runs {', '.join(f'{x:.3f}' for x in s.startup_s)}),"
            f" peak RSS {figures[f'{s.name}_startup_rss_mb']:.1f} MB,"
            f" running RSS {figures[f'{s.name}_running_rss_mb']:.1f} MB"
        )
    speedup = figures["peer_startup_s"] / figures["ours_startup_s"]
    rss_ratio = figures["peer_running_rss_mb"] / figures["ours_running_rss_mb"]
    print(f"ours installed: {installed:.1f} MB (site-packages of the clean environment)")
    print(
        f"RESULT speedup={speedup:.2f} rss_ratio={rss_ratio:.2f} "
        + " ".join(f"{k}={v:.3f}" for k, v in figures.items())
        + f" ours_installed_mb={installed:.1f} runs={runs}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
