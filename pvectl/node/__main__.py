"""``python -m pvectl.node --config FILE --node-id N --state-dir DIR``: run one node.

Started by ``pvectl lab up`` (locally, or over SSH on the lab's hosts); it runs in the
foreground until SIGTERM (clean leave) or SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pvectl.errors import PvectlError
from pvectl.node import config as node_config
from pvectl.node.handlers import dispatch
from pvectl.node.runtime import NodeRuntime


def configure_logging(state_dir: Path, node_id: int) -> logging.Logger:
    """``node.log`` in the node's state dir, lines stamped like corosync's."""
    logger = logging.getLogger(f"pvectl.node.{node_id}")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(state_dir / "node.log")
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s.%(msecs)03d [{node_id}] %(message)s", "%b %d %H:%M:%S")
    )
    logger.addHandler(handler)
    return logger


async def run_node(config: node_config.NodeConfig, state_dir: Path) -> None:
    runtime = NodeRuntime(
        config, state_dir, configure_logging(state_dir, config.node_id), on_request=dispatch
    )
    await runtime.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pvectl.node")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        args.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = node_config.load(args.config, args.node_id)
        asyncio.run(run_node(config, args.state_dir))
    except PvectlError as exc:
        print(f"pvectl node: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
