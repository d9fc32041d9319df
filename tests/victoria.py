"""A real VictoriaMetrics (Debian's `victoria-metrics`) on a free loopback port, for tests and benches.

It takes InfluxDB line protocol at /api/v2/write and gives raw samples back at
/api/v1/export: every sample it holds, duplicates included (it deduplicates only with
-dedup.minScrapeInterval, which is never set here), so counts read back are honest.
It acknowledges a write before the samples are searchable: `settled_count` forces a flush
and polls until the count stops moving.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.services import LOOPBACK, ManagedProcess, binary, free_port


def victoria_binary() -> str:
    return binary(
        "victoria-metrics",
        "/usr/bin/victoria-metrics",
        hint="run `make test` (deploy/ci/install-system-deps.sh installs it)",
    )


@dataclass(frozen=True, slots=True)
class Series:
    """One exported series: its labels (with __name__), values and timestamps (ms)."""

    labels: dict[str, str]
    values: list[float]
    timestamps: list[int]


@dataclass
class VictoriaMetrics:
    """One single-node VictoriaMetrics process; `stop()` and `start()` keep its data."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = None
    _process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "victoria-metrics.log"

    def start(self, timeout_s: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            victoria_binary(),
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y",  # tests write data from hours ago and from the future
            "-search.latencyOffset=0s",  # instant queries see what was just written
            "-search.disableCache",  # no cached query results across test steps
            "-loggerLevel=WARN",
            *self.extra_args,
        ]
        # SIGTERM: it flushes its buffers to disk (SIGKILL after the stop timeout).
        self._process = ManagedProcess("victoria-metrics", args, log=self.log, stop_timeout_s=20.0)
        self.proc = self._process.start()
        try:
            self._process.wait_ready(
                self._healthy,
                timeout_s=timeout_s,
                what=f"victoria-metrics healthy on {self.url}",
                interval_s=0.1,
            )
        except BaseException:
            self.proc = None
            raise

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (it flushes its buffers to disk), SIGKILL after `timeout_s`."""
        process, self._process, self.proc = self._process, None, None
        if process is not None:
            process.stop(timeout_s)

    def tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def export(self, match: str, start_s: float = 0, end_s: float | None = None) -> list[Series]:
        """Every raw sample of the series matching `match` (a series selector)."""
        params: dict[str, str] = {"match[]": match, "start": str(start_s)}
        if end_s is not None:
            params["end"] = str(end_s)
        r = httpx.get(f"{self.url}/api/v1/export", params=params, timeout=60.0)
        r.raise_for_status()
        out = []
        for line in r.text.splitlines():
            if line.strip():
                row = json.loads(line)
                out.append(Series(row["metric"], row["values"], row["timestamps"]))
        return out

    def sample_count(self, match: str) -> int:
        return sum(len(s.values) for s in self.export(match))

    def force_flush(self) -> None:
        """Make what was acknowledged searchable now (rather than within a second or so)."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=30.0)

    def settled_count(self, match: str, expected: int | None = None, timeout_s: float = 30.0) -> int:
        """The sample count once it has stopped moving (bounded by `timeout_s`).

        Stops early when `expected` is reached and stays there over two reads a second apart.
        """
        deadline = time.monotonic() + timeout_s
        last = -1
        while True:
            self.force_flush()
            n = self.sample_count(match)
            if n == last and (expected is None or n >= expected):
                return n
            if time.monotonic() >= deadline:
                return n
            last = n
            time.sleep(1.0)

    def query(self, promql: str, at_s: float | None = None) -> list[dict[str, object]]:
        """An instant query's result vector (MetricsQL, a superset of PromQL)."""
        params = {"query": promql}
        if at_s is not None:
            params["time"] = str(at_s)
        r = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=60.0)
        r.raise_for_status()
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {promql}: {body}")
        result: list[dict[str, object]] = body["data"]["result"]
        return result
