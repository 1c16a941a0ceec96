"""``python -m services.stack``: options and entry point."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from services.common.devstack import DevstackError
from services.stack.plan import SERVICES
from services.stack.runner import StackOptions, run_stack, say

REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> StackOptions:
    parser = argparse.ArgumentParser(
        prog="python -m services.stack",
        description="Run the whole rebalancer: NATS_URL / DATABASE_URL when set (they must answer), "
                    "otherwise embedded NATS JetStream and PostgreSQL kept under --state-dir.")
    parser.add_argument("--api-port", type=int, default=None,
                        help="the API's port (default: 8000, or the next free one)")
    parser.add_argument("--no-demo", action="store_true",
                        help="do not seed the demo user, paper account and portfolio")
    parser.add_argument("--services", default=",".join(SERVICES),
                        help=f"comma-separated services to start (default: {','.join(SERVICES)})")
    parser.add_argument("--no-services", action="store_true",
                        help="infrastructure, migrations and demo only; wait for Ctrl-C")
    parser.add_argument("--no-price-walk", action="store_true",
                        help="keep paper prices still (they drift by default so portfolios drift)")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".stack",
                        help="where embedded servers keep their data (default: .stack/)")
    args = parser.parse_args(argv)
    services: tuple[str, ...] = () if args.no_services else tuple(
        name.strip() for name in args.services.split(",") if name.strip())
    unknown = sorted(set(services) - set(SERVICES))
    if unknown:
        parser.error(f"unknown services: {', '.join(unknown)}")
    return StackOptions(state_dir=args.state_dir.resolve(), api_port=args.api_port,
                        demo=not args.no_demo, services=services,
                        price_walk=not args.no_price_walk)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        return asyncio.run(run_stack(options))
    except DevstackError as error:
        say(f"ERROR: {error}")
        return 2
    except KeyboardInterrupt:  # a Ctrl-C before the signal handlers are installed
        return 130
