"""Logging for the `armdata` command and its local Beam workers: our own messages at INFO (DEBUG
with --verbose), library chatter (Beam, TensorFlow, absl, transformers) only from ERROR up unless
--verbose. Configured before the libraries are imported, because some of them log at import time
(Beam's "apitools not found"), which would otherwise install Python's default handler first."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

OURS = ("armdata", "__main__")   # our packages, and benchmark scripts run as __main__
VERBOSE_ENV = "ARMDATA_VERBOSE"   # inherited by local worker processes
# Read by the libraries from the environment when first imported, here or in a worker process.
QUIET_ENV = {
    # TensorFlow's C++ log ("did not fully read the dataset being cached", absl's "All log
    # messages before absl::InitializeLog()" that precedes such a line)
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # oneDNN's notice, printed at import; TensorFlow here only reads and decodes records
    # (no float math whose rounding oneDNN would change)
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "GRPC_VERBOSITY": "ERROR",   # Beam's gRPC (absl) start-up lines
    # transformers' own handler: warnings (the torchvision notice) and its progress bars
    # ("Loading weights", "Writing model shards"), through huggingface_hub's switch
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


class LibraryNoise(logging.Filter):
    """Pass our own records, and everyone else's from ERROR up cut to their first line: a
    library's error (Beam logs a worker's traceback two or three times) is the detail behind the
    line armdata prints, or behind the traceback of a bug, which the command re-raises."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in OURS:
            return True
        if record.levelno < logging.ERROR:
            return False
        text = record.getMessage().strip()
        first = text.split("\n", 1)[0]
        if first != text or record.exc_info or record.exc_text:
            first += " [cut to its first line; -v shows all]"
        record.msg, record.args = first, None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


class CutTracebacks:
    """A text stream that writes a printed traceback as its last line: Beam's worker prints the
    traceback of a failed bundle straight to stderr (besides logging it), so a worker's disk-full
    or bug would otherwise put ~130 lines before the launcher's one-line error."""

    MARK = "Traceback (most recent call last):"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.cut = False   # print() writes its end="\n" separately: not a line of its own

    def write(self, text: str) -> int:
        if self.MARK in text:
            last = [line for line in text.splitlines() if line.strip()][-1]
            self.stream.write(f"{last.strip()} [traceback cut; -v shows all]\n")
            self.cut = True
        else:
            if not (self.cut and text == "\n"):
                self.stream.write(text)
            self.cut = False
        return len(text)

    def __getattr__(self, name: str) -> Any:   # flush, fileno, isatty, ...
        return getattr(self.stream, name)


def configure(verbose: bool, level: int = logging.INFO) -> None:
    """Set up the root handler for this process and the worker processes it starts: our own
    records from `level` up (all with `verbose`), the libraries' from ERROR up."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if not verbose:
        for name, value in QUIET_ENV.items():
            os.environ.setdefault(name, value)
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
