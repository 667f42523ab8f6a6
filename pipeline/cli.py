"""The `armdata` command: one subcommand per module, each exposing `register(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import pipeline

COMMANDS = ("pipeline.build", "pipeline.inspect_output", "pipeline.demo", "pipeline.preview",
            "pipeline.depth_tokens", "pipeline.train_vqvae", "pipeline.track", "trainer.cli")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="armdata", description="Build training data for action reasoning models.")
    parser.add_argument("--version", action="version", version=f"armdata {pipeline.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.build import ARG_ERRORS

    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # Beam, TF and absl are chatty at INFO
        for name in ("apache_beam", "absl", "tensorflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not args.verbose:  # Beam, TF and absl are chatty at INFO
        for name in ("apache_beam", "absl", "tensorflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if extra and not getattr(args, "accepts_beam_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "accepts_beam_args", False):
            return args.func(args, extra)
        return args.func(args)
    except ARG_ERRORS as exc:
        print(f"armdata: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
