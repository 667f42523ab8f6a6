"""Logging for the `armdata` command and its local Beam workers: our own messages at INFO (DEBUG
with --verbose), library chatter (Beam, TensorFlow, absl, transformers) only from ERROR up unless
--verbose. Configured before the libraries are imported, because some of them log at import time
(Beam's "apitools not found"), which would otherwise install Python's default handler first."""
from __future__ import annotations

import logging
import os
import sys

OURS = ("pipeline", "transforms", "models", "schemas", "configs", "benchmarks", "viewer",
        "__main__")
VERBOSE_ENV = "ARMDATA_VERBOSE"   # inherited by local worker processes


class LibraryNoise(logging.Filter):
    """Pass our own records, and everyone else's from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name.split(".")[0] in OURS


def configure(verbose: bool, level: int = logging.INFO) -> None:
    """Set up the root handler for this process and the worker processes it starts: our own
    records from `level` up (all with `verbose`), the libraries' from ERROR up."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if not verbose:
        # TensorFlow's C++ log (oneDNN notices, "did not fully read the dataset being cached")
        # is read from the environment when TensorFlow is first imported, here or in a worker.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = logging.getLogger()
    for handler in list(root.handlers):   # ours from an earlier call, or Python's default one
        if getattr(handler, "armdata", False) or (
                type(handler) is logging.StreamHandler and handler.formatter is not None
                and handler.formatter._fmt == logging.BASIC_FORMAT):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.armdata = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(LibraryNoise())
        handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in ("absl", "tensorflow", "apache_beam", "transformers", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def exit_now(code: int) -> None:
    """End the process once its work is closed and flushed, without the interpreter's teardown
    of Beam's gRPC threads, TensorFlow and torch (over a second, during which a runner or the
    shell waits)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
