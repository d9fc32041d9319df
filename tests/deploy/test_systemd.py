"""deploy/systemd: the units pass `systemd-analyze verify` with no warning, and their commands
parse with the netqos CLI parser."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from netqos.cli import build_parser
from netqos.roles import parse_roles

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
PREFIX = "/opt/netqos/bin/netqos"
# Instances to check: (template file, instance, what %i and %I become).
INSTANCES = {
    "netqos-api.service": ("netqos-api.service", "", ""),
    "netqos-ingest@.service": ("netqos-ingest@2.service", "2", "2"),
    "netqos-poller@.service": ("netqos-poller@1-3.service", "1-3", "1/3"),
}


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((UNITS / name).read_text())
    return cp


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing: run deploy/ci/install-system-deps.sh"
    shutil.copytree(UNITS, tmp_path, dirs_exist_ok=True)
    # verify checks that ExecStart's program exists: point the install prefix at this checkout's.
    netqos = Path(sys.executable).with_name("netqos")
    assert netqos.exists()
    for f in tmp_path.glob("*.service"):
        f.write_text(f.read_text().replace(PREFIX, str(netqos)))
    names = [inst for inst, _, _ in INSTANCES.values()] + ["netqos.target"]
    out = subprocess.run(
        [exe, "verify", *(f"./{n}" for n in names)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on unknown keys and bad values too; it only warns: no warning is accepted.
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_exec_start_commands_parse_with_the_cli() -> None:
    parser = build_parser()
    seen = {}
    for name, (_, i, big_i) in INSTANCES.items():
        cmd = unit(name)["Service"]["ExecStart"].replace("%I", big_i).replace("%i", i)
        argv = shlex.split(cmd)
        assert argv[0] == PREFIX
        args = parser.parse_args(argv[1:])
        seen[name] = args
        assert str(args.config) == "/etc/netqos/netqos.yaml"
    assert seen["netqos-api.service"].command == "serve"
    assert parse_roles(seen["netqos-api.service"].roles) == {"api", "alerts", "tiers"}
    assert seen["netqos-ingest@.service"].command == "ingest"
    poller = seen["netqos-poller@.service"]
    assert parse_roles(poller.roles) == {"poller"} and poller.shard == "1/3"


def test_shared_drop_in_hardening_and_signals() -> None:
    drop_in = unit("netqos-.service.d/10-netqos.conf")["Service"]
    assert drop_in["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert drop_in["KillSignal"] == "SIGTERM"
    assert drop_in["ProtectSystem"] == "strict" and drop_in["NoNewPrivileges"] == "true"
    assert drop_in["User"] == "netqos" and "/var/lib/netqos" in drop_in["ReadWritePaths"].split()
    assert drop_in["CapabilityBoundingSet"] == ""
    # Every service unit is named netqos-*, so the drop-in applies to each.
    assert all(n.startswith("netqos-") for n in INSTANCES)
    ingest = unit("netqos-ingest@.service")["Service"]
    assert ingest["Environment"].startswith("NETQOS_MQTT__TOPIC=$share/")  # last Environment= line
