"""Radio conditions of the probe's modem: technology, RSRP / RSRQ / SINR, operator, cell.

Sources (config ``radio.source``):

* ``mmcli``: ModemManager's command line, JSON output (``-J``):
  ``mmcli -m <modem> -J`` (operator, access technologies),
  ``mmcli -m <modem> --signal-get -J`` (extended signal; needs ``--signal-setup=<s>``
  once, which the source does), and ``mmcli -m <modem> --location-get -J`` (serving
  cell; optional: needs 3GPP location enabled).
* ``file:PATH``: a JSON object with RadioReading's fields, written by anything else
  (an AT-command script, a router's API poller).
* ``fixture``: fixed readings, for tests and demos.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Protocol

from probes.agent import compat

log = logging.getLogger(__name__)

RADIO_TECHNOLOGIES: Final = ("2G", "3G", "4G", "5G")

# ModemManager access technologies (MMModemAccessTechnology nicknames) by generation.
_GENERATION: Final[Mapping[str, str]] = {
    "gsm": "2G",
    "gsm-compact": "2G",
    "gprs": "2G",
    "edge": "2G",
    "1xrtt": "2G",
    "umts": "3G",
    "hsdpa": "3G",
    "hsupa": "3G",
    "hspa": "3G",
    "hspa-plus": "3G",
    "evdo0": "3G",
    "evdoa": "3G",
    "evdob": "3G",
    "lte": "4G",
    "lte-cat-m": "4G",
    "lte-nb-iot": "4G",
    "5gnr": "5G",
}

# MCC+MNC -> the operator slugs the server registers (Vietnam, MCC 452).
OPERATOR_CODES: Final[Mapping[str, str]] = {
    "45201": "mobifone",
    "45202": "vnpt",  # VinaPhone
    "45204": "viettel",
    "45205": "vietnamobile",
    "45207": "gmobile",
}
_OPERATOR_NAMES: Final[Mapping[str, str]] = {
    "viettel": "viettel",
    "vinaphone": "vnpt",
    "vnpt": "vnpt",
    "mobifone": "mobifone",
    "vietnamobile": "vietnamobile",
    "gmobile": "gmobile",
}
_SLUG_RE: Final = re.compile(r"^[a-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class RadioReading:
    """One look at the modem. Unknown values are None."""

    technology: str | None = None  # 2G 3G 4G 5G
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    cell_id: str | None = None
    operator: str | None = None  # a slug: viettel, vnpt, mobifone, ...

    def metrics(self) -> dict[str, float]:
        """The reading's radio metrics that are known, by their payload-v1 names."""
        out: dict[str, float] = {}
        for name in ("rsrp_dbm", "rsrq_db", "sinr_db"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @property
    def target(self) -> str:
        """The measurement target of radio metrics: the serving cell when known."""
        return f"cell:{self.cell_id}" if self.cell_id else "radio"


class RadioSource(Protocol):
    """Anything that can take a reading; None when the modem cannot tell right now."""

    async def read(self) -> RadioReading | None: ...


class RadioError(Exception):
    """The source could not be read (command failed, file unreadable or malformed)."""


# --- mmcli -----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """mmcli prints numbers as strings ("-95.00") and unknowns as "--"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and value.strip() != "--":
        return value.strip()
    return None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def technology_of(access_technologies: Any) -> str | None:
    """The newest generation among ModemManager's access technologies ("lte", "5gnr", ...).

    5G NSA shows as "lte, 5gnr" and is 5G; "--" or unknown values give None.
    """
    if isinstance(access_technologies, str):
        items = [s.strip() for s in access_technologies.split(",")]
    elif isinstance(access_technologies, list):
        items = [str(s).strip() for s in access_technologies]
    else:
        return None
    gens = [_GENERATION[i] for i in items if i in _GENERATION]
    return max(gens, key=RADIO_TECHNOLOGIES.index) if gens else None


def operator_slug(
    code: str | None, name: str | None, extra_codes: Mapping[str, str] | None = None
) -> str | None:
    """The server's operator slug for a network code (MCC+MNC) or name; None if unknown."""
    codes = {**OPERATOR_CODES, **(extra_codes or {})}
    if code and code in codes:
        return codes[code]
    if name:
        key = re.sub(r"[^a-z0-9]", "", name.lower())
        for known, slug in _OPERATOR_NAMES.items():
            if known in key:
                return slug
    return None


def parse_mmcli(
    modem: Mapping[str, Any],
    signal: Mapping[str, Any] | None = None,
    location: Mapping[str, Any] | None = None,
    *,
    operator_codes: Mapping[str, str] | None = None,
) -> RadioReading:
    """A reading from the JSON of ``mmcli -m X -J``, ``--signal-get -J`` and ``--location-get -J``.

    RSRP/RSRQ/SNR come from ``modem.signal.5g`` on 5G when it has values, else from
    ``modem.signal.lte``; ModemManager's ``snr`` is published as ``sinr_db``. 2G/3G have
    no RSRP: their readings carry technology and operator only.
    """
    technology = technology_of(_get(modem, "modem", "generic", "access-technologies"))
    operator = operator_slug(
        _text(_get(modem, "modem", "3gpp", "operator-code")),
        _text(_get(modem, "modem", "3gpp", "operator-name")),
        operator_codes,
    )
    rsrp = rsrq = sinr = None
    if signal is not None:
        blocks = []
        if technology == "5G":
            blocks.append(_get(signal, "modem", "signal", "5g"))
        if technology in ("4G", "5G", None):
            blocks.append(_get(signal, "modem", "signal", "lte"))
        for block in blocks:
            rsrp = _number(_get(block, "rsrp"))
            if rsrp is not None:
                rsrq = _number(_get(block, "rsrq"))
                sinr = _number(_get(block, "snr"))
                if sinr is None:
                    sinr = _number(_get(block, "sinr"))
                break
    cell_id = None
    if location is not None:
        gpp = _get(location, "modem", "location", "3gpp")
        cid = _text(_get(gpp, "cid"))
        mcc, mnc = _text(_get(gpp, "mcc")), _text(_get(gpp, "mnc"))
        if cid:
            try:
                cid_num = str(int(cid, 16))  # mmcli prints the cell id in hex; people read decimal
            except ValueError:
                cid_num = cid
            cell_id = f"{mcc}-{mnc}-{cid_num}" if mcc and mnc else cid_num
    return RadioReading(technology, rsrp, rsrq, sinr, cell_id, operator)


async def _run_json(args: Sequence[str], timeout_s: float) -> dict[str, Any]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise RadioError(f"{args[0]}: {exc.strerror or exc}") from exc
    try:
        async with compat.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise RadioError(f"{' '.join(args)}: no answer in {timeout_s} s") from None
    if proc.returncode != 0:
        raise RadioError(
            f"{' '.join(args)}: exit {proc.returncode}: {err.decode(errors='replace').strip()[:200]}"
        )
    try:
        data = json.loads(out)
    except ValueError as exc:
        raise RadioError(f"{' '.join(args)}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RadioError(f"{' '.join(args)}: not a JSON object")
    return data


class MmcliSource:
    """Readings from ModemManager through ``mmcli``."""

    def __init__(
        self,
        modem: str = "any",
        *,
        timeout_s: float = 10.0,
        signal_rate_s: int = 10,
        operator_codes: Mapping[str, str] | None = None,
        mmcli: str = "mmcli",
    ) -> None:
        self.modem = modem
        self.timeout_s = timeout_s
        self.signal_rate_s = signal_rate_s
        self.operator_codes = dict(operator_codes or {})
        self.mmcli = mmcli
        self._signal_setup_done = False

    async def read(self) -> RadioReading | None:
        """Run the mmcli commands and parse them; None when the modem cannot be read."""
        base = [self.mmcli, "-m", self.modem]
        try:
            if not self._signal_setup_done:
                # Extended signal values stay "--" until a refresh rate is set (lost on modem reset).
                try:
                    await _run_json([*base, f"--signal-setup={self.signal_rate_s}", "-J"], self.timeout_s)
                except RadioError as exc:
                    log.debug("event=radio_signal_setup_failed error=%r", str(exc))
                self._signal_setup_done = True
            modem = await _run_json([*base, "-J"], self.timeout_s)
            try:
                signal: dict[str, Any] | None = await _run_json([*base, "--signal-get", "-J"], self.timeout_s)
            except RadioError as exc:
                log.debug("event=radio_signal_failed error=%r", str(exc))
                signal = None
            try:
                location: dict[str, Any] | None = await _run_json(
                    [*base, "--location-get", "-J"], self.timeout_s
                )
            except RadioError:
                location = None  # location not enabled: no cell id, nothing wrong
        except RadioError as exc:
            log.warning("event=radio_read_failed source=mmcli error=%r", str(exc))
            self._signal_setup_done = False  # the modem may have been reset: set it up again
            return None
        reading = parse_mmcli(modem, signal, location, operator_codes=self.operator_codes)
        if reading.rsrp_dbm is None and reading.technology in ("4G", "5G"):
            self._signal_setup_done = False
        return reading


# --- file and fixture ------------------------------------------------------------------

_FIELDS: Final = {f.name for f in fields(RadioReading)}


def reading_from_dict(data: Mapping[str, Any]) -> RadioReading:
    """A reading from a JSON object with RadioReading's field names; unknown keys are errors."""
    unknown = set(data) - _FIELDS
    if unknown:
        raise RadioError(f"unknown field(s): {', '.join(sorted(unknown))}")
    tech = data.get("technology")
    if tech is not None and tech not in RADIO_TECHNOLOGIES:
        raise RadioError(f"technology must be one of {', '.join(RADIO_TECHNOLOGIES)}, not {tech!r}")
    op = data.get("operator")
    if op is not None and not (isinstance(op, str) and _SLUG_RE.match(op)):
        raise RadioError(f"operator must be a slug like 'viettel', not {op!r}")
    values: dict[str, float | None] = {}
    for name in ("rsrp_dbm", "rsrq_db", "sinr_db"):
        raw = data.get(name)
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, (int, float))):
            raise RadioError(f"{name} must be a number, not {raw!r}")
        values[name] = None if raw is None else float(raw)
    cell = data.get("cell_id")
    return RadioReading(
        technology=tech,
        rsrp_dbm=values["rsrp_dbm"],
        rsrq_db=values["rsrq_db"],
        sinr_db=values["sinr_db"],
        cell_id=None if cell is None else str(cell),
        operator=op,
    )


class FileSource:
    """Readings from a JSON file that something else keeps up to date."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def read(self) -> RadioReading | None:
        """Parse the file now; None (and a warning) when it is missing or malformed."""
        try:
            data = json.loads(await asyncio.to_thread(self.path.read_bytes))
            if not isinstance(data, dict):
                raise RadioError("not a JSON object")
            return reading_from_dict(data)
        except (OSError, ValueError, RadioError) as exc:
            log.warning("event=radio_read_failed source=file path=%s error=%r", self.path, str(exc))
            return None


DEFAULT_FIXTURE: Final = RadioReading(
    technology="4G", rsrp_dbm=-95.0, rsrq_db=-10.0, sinr_db=12.5, cell_id="452-04-12845313", operator=None
)


class FixtureSource:
    """Fixed readings, returned in turn (for tests and demos)."""

    def __init__(self, readings: Sequence[RadioReading | None] = (DEFAULT_FIXTURE,)) -> None:
        if not readings:
            raise ValueError("a fixture source needs at least one reading")
        self._cycle = itertools.cycle(list(readings))

    async def read(self) -> RadioReading | None:
        """The next reading of the cycle."""
        return next(self._cycle)


def source_from_config(
    source: str,
    *,
    modem: str = "any",
    timeout_s: float = 10.0,
    operator_codes: Mapping[str, str] | None = None,
) -> RadioSource:
    """The RadioSource for a config ``radio.source`` string (mmcli | file:PATH | fixture)."""
    if source == "mmcli":
        return MmcliSource(modem, timeout_s=timeout_s, operator_codes=operator_codes)
    if source == "fixture":
        return FixtureSource()
    if source.startswith("file:"):
        return FileSource(Path(source[len("file:") :]))
    raise ValueError(f"unknown radio source {source!r}")
