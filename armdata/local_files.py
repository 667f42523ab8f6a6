"""Durable local files, for the Beam job's work files and the trainer's checkpoints alike."""
from __future__ import annotations

import hashlib
import os


def fsync(path: str | os.PathLike) -> None:
    """Flush a local file's or directory's data and metadata to disk (a rename is only durable
    once the directory holding it is flushed too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
