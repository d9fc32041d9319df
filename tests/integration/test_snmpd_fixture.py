"""The real-snmpd helpers of tests/snmpd.py: v2c/v3 access, restart, pause, big netns ifTables."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.snmpd import (
    IF_INDEX_OID,
    IF_XTABLE_OID,
    SYS_NAME_OID,
    NetnsIfTable,
    SnmpdAgent,
    SnmpdError,
    netns_exists,
    netns_unavailable_reason,
    snmp_v2c_answers,
)

ENGINE_ID_OID = "1.3.6.1.6.3.10.2.1.1.0"
ENGINE_BOOTS_OID = "1.3.6.1.6.3.10.2.1.2.0"
IF_NAME_OID = "1.3.6.1.2.1.31.1.1.1.1"


def snmpcmd(argv: list[str], *, timeout_s: float = 10.0) -> subprocess.CompletedProcess[str]:
    """A net-snmp client command: no MIBs loaded (numeric OIDs), values only."""
    tool = shutil.which(argv[0])
    if tool is None:
        raise RuntimeError(f"{argv[0]} is not installed: run `make test` (apt-get install snmp)")
    return subprocess.run(
        [tool, "-m", "", "-On", "-Oqv", *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


QUICK = ["-t", "0.5", "-r", "0"]  # short timeout, no retries: for requests expected to fail


@pytest.fixture
def snmpd_agent(tmp_path: Path) -> Iterator[SnmpdAgent]:
    with SnmpdAgent(workdir=tmp_path / "snmpd", sys_name="netqos-edge-1", sys_location="Bac Ninh") as agent:
        yield agent


@pytest.fixture
def netns_table() -> Iterator[NetnsIfTable]:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.fail(f"network namespaces are needed here (CI runs as root): {reason}")
    with NetnsIfTable(20, agent_kwargs={"sys_name": "netns-agent"}) as table:
        yield table


def test_v2c_get_sysname(snmpd_agent: SnmpdAgent) -> None:
    out = snmpcmd(["snmpget", *snmpd_agent.v2c_args(), snmpd_agent.target, SYS_NAME_OID])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '"netqos-edge-1"'
    assert snmpd_agent.pid is not None
    assert snmpd_agent.answers()
    # A wrong community gets no answer at all.
    bad = snmpcmd(["snmpget", "-v2c", "-c", "wrong-community", *QUICK, snmpd_agent.target, SYS_NAME_OID])
    assert bad.returncode != 0 and "Timeout" in bad.stderr


@pytest.mark.parametrize(
    ("auth", "priv"), [("SHA", "AES"), ("SHA-256", "AES"), ("SHA", "AES-256"), ("SHA-256", "AES-256")]
)
def test_v3_authpriv_get(tmp_path: Path, auth: str, priv: str) -> None:
    with SnmpdAgent(
        workdir=tmp_path,
        sys_name="v3-agent",
        v3_user="ops",
        auth_protocol=auth,
        auth_password="auth-secret-1",
        priv_protocol=priv,
        priv_password="priv-secret-1",
    ) as agent:
        assert (agent.v3.name, agent.v3.auth_protocol, agent.v3.priv_protocol) == ("ops", auth, priv)
        ok = snmpcmd(["snmpget", *agent.v3_args(), agent.target, SYS_NAME_OID])
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == '"v3-agent"'

        wrong_auth = [
            "-v3",
            "-l",
            "authPriv",
            "-u",
            "ops",
            "-a",
            auth,
            "-A",
            "not-the-password",
            "-x",
            priv,
            "-X",
            "priv-secret-1",
        ]
        bad = snmpcmd(["snmpget", *wrong_auth, *QUICK, agent.target, SYS_NAME_OID])
        assert bad.returncode != 0
        assert "Authentication failure" in bad.stderr

        wrong_priv = [
            "-v3",
            "-l",
            "authPriv",
            "-u",
            "ops",
            "-a",
            auth,
            "-A",
            "auth-secret-1",
            "-x",
            priv,
            "-X",
            "not-the-priv-key",
        ]
        bad = snmpcmd(["snmpget", *wrong_priv, *QUICK, agent.target, SYS_NAME_OID])
        assert bad.returncode != 0  # the agent cannot decrypt the PDU and drops it
        assert not bad.stdout.strip()


def test_unsupported_algorithms_are_rejected() -> None:
    with pytest.raises(ValueError, match="priv protocol"):
        SnmpdAgent(priv_protocol="AES256C")
    with pytest.raises(ValueError, match="auth protocol"):
        SnmpdAgent(auth_protocol="SHA-999")
    with pytest.raises(ValueError, match="at least 8"):
        SnmpdAgent(auth_password="short")


def test_stop_start_keeps_port_and_engine(snmpd_agent: SnmpdAgent) -> None:
    port, first_pid = snmpd_agent.port, snmpd_agent.pid
    v3 = [*snmpd_agent.v3_args(), snmpd_agent.target, ENGINE_ID_OID, ENGINE_BOOTS_OID]
    before = snmpcmd(["snmpget", *v3])
    assert before.returncode == 0, before.stderr

    snmpd_agent.stop()
    assert snmpd_agent.pid is None and not snmpd_agent.running
    assert not snmpd_agent.answers(timeout_s=0.3)
    down = snmpcmd(["snmpget", *snmpd_agent.v2c_args(), *QUICK, snmpd_agent.target, SYS_NAME_OID])
    assert down.returncode != 0

    snmpd_agent.start()
    assert snmpd_agent.port == port and snmpd_agent.pid not in (None, first_pid)
    up = snmpcmd(["snmpget", *snmpd_agent.v2c_args(), snmpd_agent.target, SYS_NAME_OID])
    assert up.returncode == 0 and up.stdout.strip() == '"netqos-edge-1"'
    after = snmpcmd(["snmpget", *v3])
    assert after.returncode == 0, after.stderr
    # Like a rebooted device: same snmpEngineID, snmpEngineBoots one higher.
    *engine_before, boots_before = before.stdout.split()
    *engine_after, boots_after = after.stdout.split()
    assert engine_after == engine_before and len(engine_before) >= 5
    assert int(boots_after) == int(boots_before) + 1


def test_pause_times_out_and_resume_answers(snmpd_agent: SnmpdAgent) -> None:
    snmpd_agent.pause()
    try:
        assert snmpd_agent.paused
        out = snmpcmd(["snmpget", *snmpd_agent.v2c_args(), *QUICK, snmpd_agent.target, SYS_NAME_OID])
        assert out.returncode != 0 and "Timeout" in out.stderr
        assert snmpd_agent.pid is not None  # still there, just silent
    finally:
        snmpd_agent.resume()
    out = snmpcmd(["snmpget", *snmpd_agent.v2c_args(), snmpd_agent.target, SYS_NAME_OID])
    assert out.returncode == 0 and out.stdout.strip() == '"netqos-edge-1"'


def test_exit_while_paused_still_terminates(tmp_path: Path) -> None:
    with SnmpdAgent(workdir=tmp_path) as agent:
        agent.pause()
        pid = agent.pid
    assert pid is not None and not Path(f"/proc/{pid}").exists()


def test_start_failure_raises_with_log_tail(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        agent = SnmpdAgent(workdir=tmp_path, port=taken.getsockname()[1], start_timeout_s=5)
        with pytest.raises(SnmpdError, match="Error opening specified endpoint"), agent:
            pass
    assert agent.pid is None


def test_netns_iftable_rows_and_cleanup(netns_table: NetnsIfTable) -> None:
    agent = netns_table.agent
    assert agent is not None and agent.netns == netns_table.name
    assert netns_table.interface_count == 41
    walk = ["snmpbulkwalk", "-m", "", "-On", "-Oqv", "-Cr50", *agent.v2c_args(), agent.target]
    rows = netns_table.run([*walk, IF_INDEX_OID], timeout_s=20)
    assert rows.returncode == 0, rows.stderr
    assert len(rows.stdout.splitlines()) >= 40
    names = netns_table.run([*walk, IF_NAME_OID], timeout_s=20).stdout
    assert '"v0a"' in names and '"v19b"' in names and '"lo"' in names
    xtable = netns_table.run([*walk, IF_XTABLE_OID], timeout_s=20)
    assert len(xtable.stdout.splitlines()) >= 40 * 18
    # In-process clients reach it from a thread that entered the namespace...
    assert snmp_v2c_answers(agent.host, agent.port, agent.community, netns=netns_table.name)
    # ...and the host's own loopback does not (the agent is only on the namespace's lo).
    assert not snmp_v2c_answers(agent.host, agent.port, agent.community, timeout_s=0.3)
    # A second agent in the same namespace serves the same table.
    with netns_table.new_agent(sys_name="second") as second:
        out = netns_table.run(["snmpget", "-m", "", "-Oqv", *second.v2c_args(), second.target, SYS_NAME_OID])
        assert out.stdout.strip() == '"second"'


def test_netns_is_removed_on_exit_and_on_error() -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.fail(f"network namespaces are needed here (CI runs as root): {reason}")

    def host_links() -> set[str]:
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
        return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}

    with NetnsIfTable(5) as table:
        name, pid = table.name, table.agent.pid if table.agent else None
        assert netns_exists(name)
        inside = table.run(["ip", "-o", "link"]).stdout
        assert inside.count("\n") == 11 and "v4b@v4a" in inside
        # The veths were created inside the namespace: the host never had them.
        assert not host_links() & set(table.link_names())
    assert not netns_exists(name)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert pid is not None and not Path(f"/proc/{pid}").exists()

    with pytest.raises(RuntimeError, match="boom"), NetnsIfTable(3) as table:
        name = table.name
        raise RuntimeError("boom")
    assert not netns_exists(name)
