"""`python -m tools.sim [demo.json] [--duration SECONDS]`: the same as `storebox simulate`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tools.sim.runner import SimOptions, main


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sim", description="模拟设备 simulated devices")
    parser.add_argument("demo_json", nargs="?", type=Path, default=Path("var/demo.json"))
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--seed", type=int, default=None, help="replay the same random run")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the box")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    return main(args.demo_json, args.duration, True, wait_timeout=args.wait, options=SimOptions(seed=args.seed))


if __name__ == "__main__":
    sys.exit(cli())
