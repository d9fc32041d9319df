"""Re-capture collector/snmp/testdata/*.bin from a local net-snmp agent (a tool, not a test).

    .venv/bin/python -m tests.recapture_snmp_testdata

Sends every request of `REQUESTS` (tests/integration/test_snmp_ber_snmpd.py) to a private
snmpd on a free 127.0.0.1 port, checks that our two decoders and pysnmp agree on each
answer, and writes it. The `_51if` captures need a network namespace (see the README there).
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_snmp_ber_snmpd import REQUESTS, Agent, assert_three_decoders_agree
from tests.snmpd import SnmpdAgent

TESTDATA = Path(__file__).resolve().parents[1] / "collector" / "snmp" / "testdata"


def main() -> int:
    with SnmpdAgent(community="public", extra_config=["maxGetbulkResponses 1000"]) as snmpd:
        agent = Agent(snmpd.port, snmpd.log_path)
        TESTDATA.mkdir(exist_ok=True)
        for name, build in REQUESTS.items():
            resp = agent.exchange(build)
            assert_three_decoders_agree(resp, name)
            (TESTDATA / f"{name}.bin").write_bytes(resp)
            print(f"wrote {name}.bin ({len(resp)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
