"""The `armdata` command: one subcommand per module, each exposing `register(subparsers)`.

Errors the user can cause end in one line (`armdata: error: ...`) with exit status 2 (1 for a
build that ran but was not published); `--debug` shows the traceback instead. Logging is set up
before any library is imported (see `armdata.logs`)."""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import re
import signal
import sys
import threading
from typing import Any, Iterator, NoReturn

import armdata
from armdata import logs

# Subcommand → the module whose `register` adds it. Only the module of the command being run is
# imported (the others pull in torch, TensorFlow or transformers, seconds of start-up each).
COMMANDS = {"build": "armdata.commands.build", "inspect": "armdata.commands.inspect",
            "demo": "armdata.commands.demo", "preview": "armdata.commands.preview",
            "depth-tokens": "armdata.commands.depth_tokens", "train-vqvae": "armdata.commands.train_vqvae",
            "track": "armdata.commands.track", "push": "armdata.commands.push", "export": "armdata.commands.export",
            "train": "armdata.commands.train", "predict": "armdata.commands.train",
            "samples": "armdata.commands.samples",
            "configs": "armdata.commands.list_configs",
            "view": "armdata.viewer.cli"}
VERBOSE_FLAGS = ("-v", "--verbose")

log = logging.getLogger(__name__)


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors (a bad number, a missing option) as one line, like every other error
    of the command, instead of the usage block and the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_global_flags(parser: argparse.ArgumentParser, default: object = False) -> None:
    parser.add_argument(*VERBOSE_FLAGS, action="store_true", default=default,
                        help="debug logging, including the libraries' (Beam, TensorFlow, absl)")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the traceback of an error")


def make_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line; with `argv` naming a subcommand, only that subcommand's module is
    imported (the full list of commands shows otherwise, e.g. for `armdata --help`)."""
    parser = OneLineParser(
        prog="armdata", description="Build training data for action reasoning models.")
    parser.add_argument("--version", action="version", version=f"armdata {armdata.__version__}")
    add_global_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    named = next((a for a in argv or [] if not a.startswith("-")), None)
    modules = [COMMANDS[named]] if named in COMMANDS else COMMANDS.values()
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():   # also accepted after the command name
        add_global_flags(command, default=argparse.SUPPRESS)
    return parser


def one_line(exc: BaseException) -> str:
    return re.sub(r"\s*\n\s*", " ", str(exc)).strip() or type(exc).__name__


def check_extra(parser: argparse.ArgumentParser, args: argparse.Namespace,
                extra: list[str]) -> str | None:
    """Why the arguments neither the command nor Beam understands are refused, or None."""
    if not extra:
        return None
    command = parser._subparsers._group_actions[0].choices[args.command]   # type: ignore
    ours = [s for a in command._actions for s in a.option_strings]
    if getattr(args, "accepts_beam_args", False):
        from armdata.commands.build.runner import unknown_beam_args

        unknown, beam_names = unknown_beam_args(extra)
    else:
        unknown, beam_names = extra, []
    if not unknown:
        return None
    first = next((u for u in unknown if u.startswith("-")), unknown[0])
    guess = difflib.get_close_matches(first.split("=")[0], ours + beam_names, n=1, cutoff=0.75)
    hint = f"; did you mean {guess[0]}?" if guess else ""
    known_by = "armdata " + args.command + (" nor Beam" if beam_names else "")
    return f"unrecognized argument(s) {' '.join(unknown)}: not an option of {known_by}{hint}"


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
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    logs.configure(verbose=any(a in VERBOSE_FLAGS for a in argv))
    from armdata.errors import BuildFailed, UsageError
    from armdata.pipeline.sources.rlds import SourceError
    from armdata.schemas.config import ConfigError

    parser = make_parser(argv)
    args, extra = parser.parse_known_args(argv)
    problem = check_extra(parser, args, extra)
    if problem:
        print(f"armdata {args.command}: error: {problem}", file=sys.stderr)
        return 2
    try:
        with sigterm_raises() as terminated:
            if getattr(args, "accepts_beam_args", False):
                return args.func(args, extra)
            return args.func(args)
    except (UsageError, ConfigError, SourceError, BuildFailed) as exc:
        if args.debug:
            raise
        print(f"armdata {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1 if isinstance(exc, BuildFailed) else 2
    except KeyboardInterrupt as exc:   # Ctrl-C: what the command kept, if it says so
        if args.debug:
            raise
        said = f"; {one_line(exc)}" if str(exc) else ""
        print(f"armdata {args.command}: interrupted{said}", file=sys.stderr)
        return 128 + signal.SIGINT
    except BaseException:
        if not terminated:
            raise
        print("armdata: terminated by SIGTERM", file=sys.stderr)
        return 128 + signal.SIGTERM


def entry() -> None:
    """The `armdata` console script: once a command has returned, everything it wrote is closed,
    so the process exits at once (`logs.exit_now`)."""
    logs.exit_now(main())


if __name__ == "__main__":
    entry()
