"""Checks of the SNMP profiles a configuration uses, for `check-config`, `doctor` and `serve`:
every profile file loads (file, line, key of the first problem), and every inventory device's
`profile:` names a profile that exists."""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.inventory import InventoryError, load_devices
from collector.snmp.profile import ProfileError, inventory_profile_problems, load_profiles
from collector.snmp.settings import SnmpSettings


@dataclass(slots=True)
class ProfileReport:
    """Problems (each `file:line: key: reason`), and what was checked."""

    problems: list[str] = field(default_factory=list)
    profiles: int = 0
    devices: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_profiles(settings: SnmpSettings) -> ProfileReport:
    """Load the built-in profiles and `snmp.profiles_dir`, then check the inventory's names."""
    report = ProfileReport()
    try:
        profiles = load_profiles(settings.profiles_dir)
    except ProfileError as exc:
        report.problems.append(str(exc))
        return report
    report.profiles = len(profiles)
    if settings.inventory_file is None:
        return report
    try:
        devices = load_devices(settings.inventory_file)
    except InventoryError as exc:  # the poller says so itself; the names cannot be checked
        report.note = f"inventory not checked against the profiles: {exc}"
        return report
    report.devices = len(devices)
    bad = inventory_profile_problems(devices, profiles, settings.inventory_file)
    report.problems += [str(p) for p in bad]
    return report
