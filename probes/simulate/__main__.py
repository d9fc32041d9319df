"""``python -m probes.simulate``: run a simulated fleet against a broker until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from probes.simulate.fleet import build_fleet
from probes.simulate.run import run_fleet


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the fleet, print the totals."""
    parser = argparse.ArgumentParser(prog="python -m probes.simulate", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a probe's batches")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--backfill-minutes", type=int, default=0)
    parser.add_argument("--max-messages", type=int, default=None)
    parser.add_argument("--username", default=None)
    # The password comes from the environment so it does not show in `ps`.
    parser.add_argument("--password-env", default="NETQOS_SIM_PASSWORD", help="variable holding the password")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        stats = await run_fleet(
            build_fleet(args.probes, seed=args.seed),
            args.host,
            args.port,
            interval_s=args.interval,
            connections=args.connections,
            backfill_minutes=args.backfill_minutes,
            stop=stop,
            seed=args.seed,
            username=args.username,
            password=os.environ.get(args.password_env),
            max_messages=args.max_messages,
        )
        print(
            f"messages={stats.messages_published} measurements={stats.measurements_published} "
            f"errors={stats.errors} reconnects={stats.reconnects} skipped_offline={stats.skipped_offline}"
        )

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
