"""The kernel registry (collector/core/kernels.py): every numba function of collector/ is
registered, the warm-up compiles every one, and after it the real call paths compile nothing
(the samples have the types real calls pass: no first poll, message or flush compiles)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numba

from collector.core._jit import REGISTRY
from collector.core.kernels import dispatchers_in, import_all, registered

ROOT = Path(__file__).resolve().parents[2]
# A decorator that makes a numba function: the project's two wrappers, or numba's own.
DECORATOR = re.compile(r"^\s*@(kernel|_bare|numba\.njit|njit|numba\.jit|jit)\b", re.MULTILINE)


def test_every_numba_function_in_collector_is_registered() -> None:
    found: dict[str, object] = {}
    for module in import_all("collector"):
        found |= dispatchers_in(module)
    assert len(found) >= 44  # the kernels when the registry was made; more may come, none go
    assert sorted(found) == sorted(registered("collector"))
    for name, kernel in registered("collector").items():
        assert kernel.dispatcher is found[name] and kernel.samples, name


def test_the_source_declares_no_kernel_the_walk_misses() -> None:
    """The walk sees module attributes; a kernel nested in a function or class, or made with
    numba.njit directly under another name, is caught here by its decorator line."""
    names = registered("collector")
    for path in sorted((ROOT / "collector").rglob("*.py")):
        declared = len(DECORATOR.findall(path.read_text()))
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        mine = [n for n in names if n.rsplit(".", 1)[0] == module]
        assert declared == len(mine), (module, declared, mine)


@numba.njit(cache=False)
def _not_registered(x: int) -> int:
    return x + 1


def test_the_walk_finds_an_unregistered_kernel() -> None:
    """The check above can fail: a numba function nobody registered is found, and is not in
    the registry."""
    found = dispatchers_in(sys.modules[__name__])
    assert list(found) == [f"{__name__}._not_registered"]
    assert f"{__name__}._not_registered" not in REGISTRY


# In a fresh interpreter (nothing compiled yet by other tests): the warm-up, then the calls
# the service makes, each as its callers pass its arguments; every kernel's signatures before
# and after.
_PROBE = r"""
import json
import numpy as np
from collector.core.kernels import registered, warm_up

warm_up()
kernels = registered()
after_warm = {n: len(k.dispatcher.signatures) for n, k in kernels.items()}

from collector.core import (SampleBatch, availability, counter_rates, decode_sketch, decode_sketches,
    encode_sketch, encode_sketches, jitter, keys_of, mean, merge, merge_into, quantiles, rollup,
    sequence_loss, value_of_keys)
from collector.core.shares import with_counters
from collector.events import StateChange
from collector.mqtt.scan import N_METRICS, Scanner
from collector.pipeline.expand import _count_samples, _fill_samples, _missing_series
from collector.snmp.ber import Columns, TimeTicks, decode_response_columnar, encode_response

batch = SampleBatch(np.array([1, 1, 2], dtype=np.int32), np.array([0, 1, -1], dtype=np.int64),
                    np.array([0.5, -2.0, 0.0]))
rs = rollup(batch)
rollup(SampleBatch(batch.series_id[::-1].copy(), batch.ts_ms[::-1].copy(), batch.value[::-1].copy()))
merged = merge(rs, np.zeros(len(rs), dtype=np.int32), np.zeros(len(rs), dtype=np.int64))
merge_into(rs, rs)
quantiles(merged, [0.5, 0.95])
mean(merged)
value_of_keys(keys_of(batch.value))
decode_sketch(encode_sketch(*merged.row_sketch(0)))
decode_sketches(encode_sketches(rs.sketch_offsets, rs.sketch_keys, rs.sketch_counts))
counter_rates(batch.series_id, batch.ts_ms, np.array([5, 9, 1], dtype=np.uint64), 32)
with_counters(batch, np.array([1], dtype=np.int32), np.array([0.0]), np.array([3], dtype=np.int32))
jitter(batch)
sequence_loss(batch.series_id, batch.ts_ms, np.array([1, 3, 7], dtype=np.int64))
availability([StateChange("device", "d", "down", 1)], 0, 10, maintenance=[(None, 2, 3)])
packet = encode_response(1, b"public", [((1, 3, 6, 1, 2, 1, 1, 3, 0), TimeTicks(1))])
columns = Columns.of([(1, 3, 6, 1, 2, 1, 1)])
decode_response_columnar(packet, columns)
decode_response_columnar(bytearray(packet), columns)
payload = b'{"v":1,"probe_id":"p1","seq":1,"measurements":[{"ts":1,"metrics":{"rtt_ms":5.0}}]}'
out = (np.zeros(4, dtype=np.int64), np.zeros((4, N_METRICS)), np.zeros(4, dtype=np.int32))
Scanner().scan(payload, 4, *out, 0)
# The pipeline's flush: row slices of its (capacity, metrics) buffers, its (streams, metrics) table.
values = np.full((8, N_METRICS), np.nan)[:2]
streams = np.zeros(2, dtype=np.int64)
table = np.full((1, N_METRICS), -1, dtype=np.int64)
per_row = np.zeros(2, dtype=np.int64)
_count_samples(values, streams, table, per_row)
_missing_series(values, streams, table, np.zeros((1, N_METRICS), dtype=np.bool_))
i64 = np.zeros(2, dtype=np.int64)
_fill_samples(values, streams, table, np.zeros(8, dtype=np.int64)[:2], i64, i64, np.zeros(2))
after_use = {n: len(k.dispatcher.signatures) for n, k in kernels.items()}
print(json.dumps({"warm": after_warm, "use": after_use}))
"""


def test_the_warm_up_compiles_every_kernel_and_real_calls_compile_nothing_more() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, check=False, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(seen["warm"]) == sorted(registered("collector"))
    uncompiled = [n for n, k in seen["warm"].items() if k == 0]
    assert uncompiled == []
    # Kernels called from other kernels may gain a specialisation inside their caller's compile
    # (at warm-up, not here); a top-level call path that compiled now would show up as one more.
    grew = {n: (seen["warm"][n], seen["use"][n]) for n in seen["warm"] if seen["use"][n] != seen["warm"][n]}
    assert grew == {}
