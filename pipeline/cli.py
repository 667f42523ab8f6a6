"""The `armdata` command: one subcommand per module, each exposing `register(subparsers)`."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from typing import Any, Iterator

import pipeline

COMMANDS = ("pipeline.build", "pipeline.inspect_output", "pipeline.demo", "pipeline.preview",
            "pipeline.depth_tokens", "pipeline.train_vqvae", "pipeline.track")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="armdata", description="Build training data for action reasoning models.")
    parser.add_argument("--version", action="version", version=f"armdata {pipeline.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


@contextlib.contextmanager
def sigterm_raises() -> Iterator[list[int]]:
    """Turn SIGTERM (a cancelled or preempted launcher) into SystemExit so that commands clean up
    as on any failure: a build deletes its staging directory and keeps its work directory.
    Yields the list of signals received (Beam re-raises SystemExit inside a DoFn as another
    error, so the caller looks here to tell a termination from a failure)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals: main thread only
        yield received
        return

    def terminate(signum: int, frame: Any) -> None:
        received.append(signum)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        with sigterm_raises() as terminated:
            if getattr(args, "accepts_beam_args", False):
                return args.func(args, extra)
            return args.func(args)
    except ARG_ERRORS as exc:
        print(f"armdata: error: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        if not terminated:
            raise
        print("armdata: terminated by SIGTERM", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
