"""The measurement model: what a simulated probe measures at a given moment.

Everything here is a pure function of (probe, time, seed) plus the noise drawn from the
``rng`` passed in, so a run can be replayed and history can be generated for any past
interval (backfill) with the same episodes the live run would have seen.

Ingredients, per probe:

* a fixed *profile* (median rtt, median throughput, mean radio conditions) drawn once
  from the probe id and the seed, within the baseline of its technology and terrain;
* a daily *load cycle* in local time (UTC+7): quiet at night, a late-morning shoulder and
  a busy hour around 20:00–22:00 that raises rtt and lowers throughput;
* lognormal per-test noise, jitter proportional to rtt, binomial packet loss;
* *episodes* drawn per 30-minute window from a seeded generator: degradations
  (rtt x3–10, loss up, throughput down) and outages (the probe is off and sends nothing).
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from probes.simulate.fleet import SimProbe

SCHEMA_VERSION = 1
#: One rtt/loss/jitter test every 10 s, as a field probe would run them.
TEST_SPACING_MS = 10_000
LOCAL_UTC_OFFSET_H = 7
#: Packets per rtt test; loss_ratio is lost / PING_PACKETS.
PING_PACKETS = 20
#: payload-v1 allows 5,000 measurements per message; the speed and access tests take two.
MAX_TESTS = 4998

EPISODE_WINDOW_MS = 30 * 60_000
_DEGRADED_MS = (3 * 60_000, 20 * 60_000)
_OUTAGE_MS = (2 * 60_000, 8 * 60_000)
_MAX_EPISODE_MS = max(_DEGRADED_MS[1], _OUTAGE_MS[1])
# Chance per probe and 30-minute window; with 200 probes that is a couple of probes
# degraded and an outage every quarter hour or so somewhere in the fleet, enough to
# exercise alerting without drowning the charts.
_P_DEGRADED = 0.03
_P_OUTAGE = 0.012

# Ranges the payload schema allows (docs/payload-v1.md), used to clip every value.
_MAX_MS = 600_000.0
_RSRP_RANGE = (-140.0, -44.0)  # 3GPP reporting range, inside the schema's -160..-30
_RSRQ_RANGE = (-19.5, -3.0)  # inside -40..10
_SINR_RANGE = (-10.0, 30.0)  # inside -30..50

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Baseline:
    rtt_ms: tuple[float, float]  # range of a probe's median rtt
    dl_bps: tuple[float, float]  # range of a probe's median download (log-uniform)
    ul_fraction: tuple[float, float]  # upload as a fraction of download
    rtt_noise: float  # lognormal sigma per test
    tput_noise: float  # lognormal sigma per speed test
    load_rtt: float  # fractional rtt increase at full load
    load_tput: float  # fractional throughput decrease at full load
    rsrp_dbm: tuple[float, float] | None  # range of a probe's mean RSRP; None: fixed line
    sinr_db: tuple[float, float] | None


_BASELINES: dict[str, _Baseline] = {
    "5G": _Baseline(
        rtt_ms=(12.0, 18.0), dl_bps=(150e6, 400e6), ul_fraction=(0.08, 0.15),
        rtt_noise=0.25, tput_noise=0.25, load_rtt=0.6, load_tput=0.45,
        rsrp_dbm=(-100.0, -80.0), sinr_db=(10.0, 25.0),
    ),
    "4G": _Baseline(
        rtt_ms=(30.0, 50.0), dl_bps=(20e6, 60e6), ul_fraction=(0.20, 0.35),
        rtt_noise=0.30, tput_noise=0.30, load_rtt=0.9, load_tput=0.55,
        rsrp_dbm=(-105.0, -85.0), sinr_db=(5.0, 20.0),
    ),
    # GPON plans are close to symmetric; the noise is small on a fixed line.
    "FTTH": _Baseline(
        rtt_ms=(5.0, 10.0), dl_bps=(80e6, 300e6), ul_fraction=(0.50, 1.00),
        rtt_noise=0.20, tput_noise=0.15, load_rtt=0.4, load_tput=0.30,
        rsrp_dbm=None, sinr_db=None,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ProbeProfile:
    """The fixed character of one probe (medians at zero load, mean radio conditions)."""

    rtt_ms: float
    dl_bps: float
    ul_bps: float
    rsrp_dbm: float | None
    sinr_db: float | None
    episode_scale: float


@dataclass(frozen=True)
class Episode:
    """A stretch of time in which a probe is degraded or off."""

    kind: Literal["degraded", "outage"]
    start_ms: int
    end_ms: int
    rtt_factor: float = 1.0
    loss_p: float = 0.0
    tput_factor: float = 1.0


def _entropy(*parts: int) -> list[int]:
    # default_rng wants non-negative ints; masking keeps a negative seed usable.
    return [p & 0xFFFF_FFFF_FFFF_FFFF for p in parts]


def _probe_key(probe_id: str) -> int:
    return zlib.crc32(probe_id.encode("utf-8"))


def _baseline(technology: str) -> _Baseline:
    try:
        return _BASELINES[technology]
    except KeyError:
        raise ValueError(f"no model for technology {technology!r} (have {sorted(_BASELINES)})") from None


@lru_cache(maxsize=8192)
def probe_profile(probe: SimProbe, seed: int = 0) -> ProbeProfile:
    """The fixed profile of ``probe`` for ``seed`` (deterministic, cached)."""
    base = _baseline(probe.technology)
    rng = np.random.default_rng(_entropy(seed, _probe_key(probe.probe_id), 0x9F0F))
    rtt = float(rng.uniform(*base.rtt_ms))
    dl = float(np.exp(rng.uniform(math.log(base.dl_bps[0]), math.log(base.dl_bps[1]))))
    ul_fraction = float(rng.uniform(*base.ul_fraction))
    rsrp = float(rng.uniform(*base.rsrp_dbm)) if base.rsrp_dbm else None
    sinr = float(rng.uniform(*base.sinr_db)) if base.sinr_db else None
    scale = 1.0
    if probe.terrain == "mountain":
        # Long microwave backhaul, sparse sites and hills: slower, weaker signal, and
        # power or transmission cuts are more frequent.
        scale = 2.0
        if base.rsrp_dbm is None:
            rtt *= 1.25
            dl *= 0.8
        else:
            rtt *= 1.4
            dl *= 0.5
            rsrp = None if rsrp is None else rsrp - 12.0
            sinr = None if sinr is None else sinr - 4.0
    return ProbeProfile(rtt, dl, dl * ul_fraction, rsrp, sinr, scale)


def local_hour(ts_ms: npt.ArrayLike) -> FloatArray:
    """Hour of day (0–24, fractional) in Vietnam local time for epoch milliseconds."""
    hours = np.asarray(ts_ms, dtype=np.float64) / 3_600_000.0 + LOCAL_UTC_OFFSET_H
    return np.asarray(np.mod(hours, 24.0), dtype=np.float64)


def load_factor(ts_ms: npt.ArrayLike) -> FloatArray:
    """Network load 0–1 at the given times: ~0.1 at night, ~1 in the 20:00–22:00 busy hour."""
    hour = local_hour(ts_ms)

    def bump(centre: float, width: float) -> FloatArray:
        d = np.abs(hour - centre)
        d = np.minimum(d, 24.0 - d)  # circular: 23:00 is close to 01:00
        return np.asarray(np.exp(-0.5 * (d / width) ** 2), dtype=np.float64)

    load = 0.1 + 0.3 * bump(10.5, 2.5) + 0.25 * bump(15.0, 2.5) + 0.9 * bump(21.0, 1.3)
    return np.asarray(np.clip(load, 0.0, 1.0), dtype=np.float64)


@lru_cache(maxsize=65536)
def _window_episodes(probe_id: str, scale: float, seed: int, window: int) -> tuple[Episode, ...]:
    # Always draw the same number of values so one window's outcome never depends on
    # another's: episodes are a function of (seed, probe, window) only.
    rng = np.random.default_rng(_entropy(seed, _probe_key(probe_id), window, 0xE915))
    u = rng.random(9)
    w0 = window * EPISODE_WINDOW_MS
    found: list[Episode] = []
    if u[0] < _P_DEGRADED * scale:
        start = w0 + int(u[1] * EPISODE_WINDOW_MS)
        length = int(_DEGRADED_MS[0] + u[2] * (_DEGRADED_MS[1] - _DEGRADED_MS[0]))
        found.append(
            Episode(
                "degraded",
                start,
                start + length,
                rtt_factor=3.0 + 7.0 * float(u[3]),
                loss_p=0.02 + 0.23 * float(u[4]),
                tput_factor=0.1 + 0.4 * float(u[5]),
            )
        )
    if u[6] < _P_OUTAGE * scale:
        start = w0 + int(u[7] * EPISODE_WINDOW_MS)
        length = int(_OUTAGE_MS[0] + u[8] * (_OUTAGE_MS[1] - _OUTAGE_MS[0]))
        found.append(Episode("outage", start, start + length))
    return tuple(found)


def episodes(probe: SimProbe, start_ms: int, end_ms: int, seed: int = 0) -> list[Episode]:
    """The degradation and outage episodes of ``probe`` that overlap [start_ms, end_ms]."""
    scale = probe_profile(probe, seed).episode_scale
    first = (start_ms - _MAX_EPISODE_MS) // EPISODE_WINDOW_MS
    last = end_ms // EPISODE_WINDOW_MS
    return [
        e
        for w in range(first, last + 1)
        for e in _window_episodes(probe.probe_id, scale, seed, w)
        if e.start_ms <= end_ms and e.end_ms > start_ms
    ]


def is_offline(probe: SimProbe, ts_ms: int, seed: int = 0) -> bool:
    """True when ``probe`` is in an outage at ``ts_ms`` and so publishes nothing."""
    return any(e.kind == "outage" for e in episodes(probe, ts_ms, ts_ms, seed))


@dataclass(frozen=True)
class _Effects:
    offline: BoolArray
    degraded: BoolArray
    rtt_factor: FloatArray
    loss_p: FloatArray
    tput_factor: FloatArray


def _effects(eps: list[Episode], ts: IntArray) -> _Effects:
    offline = np.zeros(ts.shape, dtype=np.bool_)
    degraded = np.zeros(ts.shape, dtype=np.bool_)
    rtt_factor = np.ones(ts.shape, dtype=np.float64)
    loss_p = np.zeros(ts.shape, dtype=np.float64)
    tput_factor = np.ones(ts.shape, dtype=np.float64)
    for e in eps:
        inside = (ts >= e.start_ms) & (ts < e.end_ms)
        if e.kind == "outage":
            offline |= inside
        else:
            degraded |= inside
            # Overlapping episodes: the worst one wins.
            rtt_factor = np.where(inside, np.maximum(rtt_factor, e.rtt_factor), rtt_factor)
            loss_p = np.where(inside, np.maximum(loss_p, e.loss_p), loss_p)
            tput_factor = np.where(inside, np.minimum(tput_factor, e.tput_factor), tput_factor)
    return _Effects(offline, degraded, rtt_factor, loss_p, tput_factor)


def _ms(x: float) -> float:
    return round(min(max(float(x), 0.0), _MAX_MS), 2)


def _measurement(probe: SimProbe, ts: int, metrics: dict[str, float | int]) -> dict[str, Any]:
    return {
        "ts": int(ts),
        "target": probe.target,
        "technology": probe.technology,
        "operator": probe.operator,
        "metrics": metrics,
    }


def make_payload(
    probe: SimProbe,
    seq: int,
    ts_ms: int,
    rng: np.random.Generator,
    n_tests: int = 1,
    *,
    seed: int = 0,
    sent_ts_ms: int | None = None,
    test_spacing_ms: int = TEST_SPACING_MS,
    instance: str | None = None,
) -> dict[str, Any]:
    """One schema-v1 message body for ``probe``: the tests of the interval ending at ``ts_ms``.

    Contains ``n_tests`` rtt/loss/jitter tests spaced ``test_spacing_ms`` apart, the last
    at ``ts_ms`` (tests that fall in an outage are left out: the probe was off), one speed
    test (dl/ul, plus rsrp/rsrq/sinr for mobile probes) at ``ts_ms``, and now and then a
    service access test (dns/access time/access failed) at ``ts_ms``. No timestamp is
    later than ``ts_ms``. ``seed`` selects the probe profile and episodes (use the fleet's
    seed); ``rng`` supplies the per-test noise. ``sent_ts`` is ``sent_ts_ms`` or ``ts_ms``.
    ``instance``, when given, is sent as the batch's agent instance id.
    Callers skip a probe while :func:`is_offline` says it is in an outage.
    """
    if seq < 0:
        raise ValueError("seq must be >= 0")
    if not 1 <= n_tests <= MAX_TESTS:
        raise ValueError(f"n_tests must be 1..{MAX_TESTS}")
    if test_spacing_ms <= 0:
        raise ValueError("test_spacing_ms must be > 0")
    base = _baseline(probe.technology)
    prof = probe_profile(probe, seed)
    span_start = ts_ms - (n_tests - 1) * test_spacing_ms
    eps = episodes(probe, span_start, ts_ms, seed)

    # --- rtt / loss / jitter tests, vectorised over the interval ---
    test_ts: IntArray = ts_ms - test_spacing_ms * np.arange(n_tests - 1, -1, -1, dtype=np.int64)
    eff = _effects(eps, test_ts)
    keep = ~eff.offline
    test_ts = test_ts[keep]
    degraded = eff.degraded[keep]
    n = len(test_ts)
    load = load_factor(test_ts)
    rtt = prof.rtt_ms * (1.0 + base.load_rtt * load) * rng.lognormal(0.0, base.rtt_noise, n)
    rtt = rtt * eff.rtt_factor[keep]
    # Packet loss is mostly zero; the busy hour loses the odd packet, an episode many.
    p_packet = np.where(degraded, eff.loss_p[keep], 0.0005 + 0.004 * load**3)
    lost = rng.binomial(PING_PACKETS, p_packet)
    # Now and then a degraded link drops a whole test: all packets lost, no rtt at all.
    blackout = degraded & (rng.random(n) < 0.05)
    lost = np.where(blackout, PING_PACKETS, lost)
    loss = lost / PING_PACKETS
    jitter = rtt * 0.08 * rng.lognormal(0.0, 0.5, n) * np.where(degraded, 2.5, 1.0)

    measurements: list[dict[str, Any]] = []
    for i in range(n):
        if lost[i] == PING_PACKETS:
            metrics: dict[str, float | int] = {"loss_ratio": 1.0}
        else:
            metrics = {"rtt_ms": _ms(rtt[i]), "loss_ratio": float(loss[i]), "jitter_ms": _ms(jitter[i])}
        measurements.append(_measurement(probe, int(test_ts[i]), metrics))

    # --- speed test (and radio conditions) at ts_ms ---
    now = _effects(eps, np.array([ts_ms], dtype=np.int64))
    load_now = float(load_factor(ts_ms))
    degraded_now = bool(now.degraded[0])
    tput_factor = float(now.tput_factor[0])
    speed: dict[str, float | int] = {}
    if prof.rsrp_dbm is not None and prof.sinr_db is not None:
        # A loaded cell means more interference (lower SINR/RSRQ); an episode more so.
        sinr = prof.sinr_db - 6.0 * load_now + rng.normal(0.0, 2.5) - (8.0 if degraded_now else 0.0)
        sinr = float(np.clip(sinr, *_SINR_RANGE))
        rsrp = float(np.clip(prof.rsrp_dbm + rng.normal(0.0, 3.0), *_RSRP_RANGE))
        rsrq = -7.0 - 6.0 * load_now + rng.normal(0.0, 1.5) - (3.0 if degraded_now else 0.0)
        rsrq = float(np.clip(rsrq, *_RSRQ_RANGE))
        speed.update({"rsrp_dbm": round(rsrp, 1), "rsrq_db": round(rsrq, 1), "sinr_db": round(sinr, 1)})
        # Throughput follows spectral efficiency (Shannon) relative to the probe's usual SINR.
        usual = math.log2(1.0 + 10.0 ** (prof.sinr_db / 10.0))
        tput_factor *= float(np.clip(math.log2(1.0 + 10.0 ** (sinr / 10.0)) / usual, 0.1, 1.5))
    dl = prof.dl_bps * (1.0 - base.load_tput * load_now) * rng.lognormal(0.0, base.tput_noise) * tput_factor
    ul = prof.ul_bps * (1.0 - 0.5 * base.load_tput * load_now) * rng.lognormal(0.0, base.tput_noise)
    ul *= tput_factor
    measurements.append(
        _measurement(probe, ts_ms, {"dl_bps": round(max(dl, 0.0)), "ul_bps": round(max(ul, 0.0)), **speed})
    )

    # --- service access test, about once a minute ---
    span_ms = n_tests * test_spacing_ms
    if rng.random() < min(1.0, span_ms / 60_000):
        p_fail = 0.12 if degraded_now else 0.004 + 0.01 * load_now
        if rng.random() < p_fail:
            access: dict[str, float | int] = {"access_failed": 1}
        else:
            rtt_now = prof.rtt_ms * (1.0 + base.load_rtt * load_now) * float(now.rtt_factor[0])
            dns = rtt_now * rng.lognormal(0.4, 0.5)
            # A page fetch is DNS plus several round trips plus server time.
            access_time = dns + (250.0 + 8.0 * rtt_now) * rng.lognormal(0.0, 0.35)
            access = {"dns_ms": _ms(dns), "access_time_ms": _ms(access_time), "access_failed": 0}
        measurements.append(_measurement(probe, ts_ms, access))

    synced, offset_ms = clock_report(probe, seed)
    body: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "probe_id": probe.probe_id,
        "seq": int(seq),
        "sent_ts": int(ts_ms if sent_ts_ms is None else sent_ts_ms),
        "clock_offset_ms": offset_ms,
        "clock_synced": synced,
        "measurements": measurements,
    }
    if instance is not None:
        body["instance"] = instance
    return body


def clock_report(probe: SimProbe, seed: int = 0) -> tuple[bool, float]:
    """(clock_synced, clock_offset_ms) the probe reports, as the field agent does
    (probes/agent/clock.py): a few ms off for a synchronised clock; about one probe in 25
    has no NTP and runs seconds off. Fixed per probe, and drawn apart from the measurement
    noise so it does not change any other simulated value."""
    h = zlib.crc32(f"clock:{seed}:{probe.probe_id}".encode())
    if h % 25 == 0:
        return False, float(1500 + (h >> 8) % 3000)
    return True, ((h >> 8) % 2001 - 1000) / 100


def encode(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON for ``payload``; refuses NaN/Infinity as the schema does."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
