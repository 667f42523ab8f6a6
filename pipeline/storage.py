"""File access for local paths and object stores (gs://, s3://) through Beam's FileSystems,
plus the staging/publish protocol: a build writes everything under a staging prefix and moves it
to the output only after the job succeeded, so a crashed run never looks complete."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from typing import IO, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

STAGING_MARK = ".armdata-staging-"


def is_local(path: str) -> bool:
    return "://" not in path


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def list_files(prefix: str) -> list[str]:
    """All files below a directory/prefix, sorted."""
    if is_local(prefix):
        if not os.path.isdir(prefix):
            return []
        return sorted(os.path.join(r, f) for r, _, fs in os.walk(prefix) for f in fs)
    pattern = prefix.rstrip("/") + "/**"
    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def is_nonempty_dir(path: str) -> bool:
    return bool(list_files(path))


def open_write(path: str) -> IO[bytes]:
    if is_local(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


@contextlib.contextmanager
def open_write_atomic(path: str) -> Iterator[IO[bytes]]:
    """Write a file that readers see whole or not at all: locally under a temporary name, renamed
    when complete; on object stores an object only appears once its upload completed."""
    if not is_local(path):
        with open_write(path) as f:
            yield f
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with open_write(tmp) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def size(path: str) -> int | None:
    """The size of a file in bytes, None if it does not exist."""
    if is_local(path):
        return os.path.getsize(path) if os.path.isfile(path) else None
    if not exists(path):
        return None
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def open_read(path: str) -> IO[bytes]:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def write_bytes(path: str, data: bytes) -> None:
    with open_write(path) as f:
        f.write(data)


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def delete_tree(prefix: str) -> None:
    if is_local(prefix):
        shutil.rmtree(prefix, ignore_errors=True)
        return
    files = list_files(prefix)
    if files:
        FileSystems.delete(files)


def staging_dir(output: str) -> str:
    return output.rstrip("/") + STAGING_MARK + uuid.uuid4().hex[:12]


def publish(staging: str, output: str) -> None:
    """Move a finished staging directory to `output` (replacing it). Locally this is one rename;
    on object stores files are renamed one by one and the manifest is moved last, so readers that
    wait for `manifest.json` never see a partial dataset."""
    if is_local(output):
        if os.path.exists(output):
            shutil.rmtree(output)
        os.replace(staging, output)
        return
    delete_tree(output)
    src = list_files(staging)
    manifest = [s for s in src if s.endswith("/manifest.json")]
    rest = [s for s in src if s not in manifest]
    for group in (rest, manifest):
        if group:
            dst = [output.rstrip("/") + s[len(staging.rstrip("/")):] for s in group]
            FileSystems.rename(group, dst)


class HashingWriter:
    """A write-only file wrapper that computes the sha256 of what passes through."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False
