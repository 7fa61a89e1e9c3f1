"""Provides the entry point `accelerate launch -m tuitrain.train RUN_DIR [--resume]`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and train the run in RUN_DIR."""
    p = argparse.ArgumentParser(
        prog="python -m tuitrain.train", description="Train one run from its saved config."
    )
    p.add_argument("run_dir", help="runs/<run-id> holding config.yaml")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in RUN_DIR/checkpoints",
    )
    args = p.parse_args(argv)
    from tuitrain.train.loop import train

    return train(args.run_dir, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
