"""File access for local paths and object stores (gs://, s3://) through Beam's FileSystems,
plus the staging/publish protocol: a build writes everything under a staging prefix and moves it
to the output only after the job succeeded, so a crashed run never looks complete; the previous
output is moved aside (never deleted) until the new one is in place; one build at a time holds
an output's lock."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Callable, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
import google_crc32c

from armdata.errors import UsageError
from armdata.local_files import fsync
from armdata.schemas.output import SCHEMA_VERSION

log = logging.getLogger(__name__)

STAGING_MARK = ".armdata-staging-"
PREVIOUS_MARK = ".armdata-previous-"   # the replaced output, until the new one is in place
LOCK_SUFFIX = ".armdata-lock"
MANIFEST = "manifest.json"
# What every manifest armdata wrote has, and the schema versions this armdata reads (v1: images as
# plain binary).
MANIFEST_KEYS = ("schema_version", "armdata_version", "config", "counts", "shards")
SCHEMA_VERSIONS = range(1, SCHEMA_VERSION + 1)
DELETE_THREADS = 8   # local unlinks in flight at once (`delete_tree`)


def is_local(path: str) -> bool:
    return "://" not in path


def resolve(path: str) -> str:
    """The real location of a local path (symlinks followed), so that every alias of a folder
    shares its lock and publishing replaces the folder, not the alias; object paths as given."""
    return os.path.realpath(path) if is_local(path) else path


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
    """Whether a directory holds anything: locally any entry counts (a link, an empty folder)."""
    if is_local(path):
        return os.path.isdir(path) and bool(os.listdir(path))
    return bool(list_files(path))


def open_write(path: str) -> IO[bytes]:
    if is_local(path):   # the file Beam's LocalFileSystem.create opens, without its layers
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return open(path, "wb")
    return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)


def temp_path(path: str) -> str:
    """A local name to write `path` under until `make_durable` renames it."""
    return f"{path}.tmp-{os.urandom(6).hex()}"


def remove_quietly(path: str) -> None:
    """Remove a local file if it is there and can be removed (cleanup that must not hide the
    error being handled)."""
    with contextlib.suppress(OSError):
        os.remove(path)


def make_durable(renames: list[tuple[str, str]]) -> None:
    """Put local files written under temporary names (`temp_path`) in place as one commit: sync
    every file, rename them in order, then sync each directory holding them, once. No name
    points at data that is not on disk (a power loss or kill never leaves a final name with
    unwritten blocks), and once this returns the renames survive a crash. The temporary files
    are removed if it fails."""
    try:
        for tmp, _ in renames:
            fsync(tmp)
        for tmp, path in renames:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in renames:
            remove_quietly(tmp)
        raise
    for directory in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for _, p in renames):
        fsync(directory)


def blocks(path: str, chunk: int = 8 << 20) -> Iterator[bytes]:
    """A file's bytes, `chunk` at a time (for checksums of files of any size)."""
    with open_read(path) as f:
        while block := f.read(chunk):
            yield block


def crc32c(data: bytes) -> str:
    return f"{google_crc32c.value(data):08x}"


def crc32c_of(path: str, chunk: int = 8 << 20) -> str:
    crc = 0
    for block in blocks(path, chunk):
        crc = google_crc32c.extend(crc, block)
    return f"{crc:08x}"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    for block in blocks(path):
        digest.update(block)
    return digest.hexdigest()


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
    """Delete a directory/prefix and everything below it, quietly leaving what cannot be deleted.
    Locally the files are unlinked by DELETE_THREADS threads at once: on a busy disk each unlink
    waits for the file system's journal, and the waits overlap (a build's work directory of 100
    episodes, 200 files in 85 folders: 0.37 s instead of 0.95 s while other processes synced)."""
    if is_local(prefix):
        files = list_files(prefix)
        if len(files) > 1:
            with ThreadPoolExecutor(DELETE_THREADS) as pool:
                for _ in pool.map(remove_quietly, files):
                    pass
        shutil.rmtree(prefix, ignore_errors=True)
        return
    files = list_files(prefix)
    if files:
        FileSystems.delete(files)


def staging_dir(output: str) -> str:
    return output.rstrip("/") + STAGING_MARK + uuid.uuid4().hex[:12]


def manifest_paths(manifest: dict) -> set[str]:
    """The folder-relative paths of every file a manifest says its build wrote."""
    files = manifest.get("files")   # every file with its sha256, where the manifest has it
    entries = [*manifest["shards"], *(files if isinstance(files, list) else [])]
    rejected = manifest.get("rejected")
    paths = {MANIFEST, "README.md", manifest.get("statistics"),
             rejected.get("path") if isinstance(rejected, dict) else None,
             *(e.get("path") for e in entries if isinstance(e, dict))}
    return {p for p in paths if isinstance(p, str)}


def _entries(path: str) -> Iterator[tuple[str, str]]:
    """(relative path, kind) of everything below `path`, top down in name order; kind is
    "file", "folder" or "link" (links are not followed)."""
    if not is_local(path):
        prefix = path.rstrip("/") + "/"
        for f in list_files(path):
            yield f[len(prefix):], "file"
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            yield rel, ("link" if os.path.islink(full) else
                        "folder" if name in dirs else "file")


def why_not_armdata_output(path: str) -> str | None:
    """Why `path` is not a folder armdata published, or None if it is. Proven by content, not
    by a name: its manifest.json parses, has our manifest's keys and a schema version we know,
    and everything in the folder is a file that manifest lists (or a folder holding them)."""
    if not exists(join(path, MANIFEST)):
        return f"it has no {MANIFEST}"
    try:
        manifest = json.loads(read_bytes(join(path, MANIFEST)))
    except ValueError:
        return f"its {MANIFEST} is not JSON"
    missing = [k for k in MANIFEST_KEYS if k not in manifest] if isinstance(manifest, dict) \
        else list(MANIFEST_KEYS)
    if missing or not isinstance(manifest["shards"], list):
        return f"its {MANIFEST} lacks armdata's keys ({', '.join(missing) or 'shards list'})"
    version = manifest["schema_version"]
    if type(version) is not int or version not in SCHEMA_VERSIONS:
        return (f"its {MANIFEST} has schema_version {version!r}, not one this armdata knows "
                f"({', '.join(map(str, SCHEMA_VERSIONS))})")
    listed = manifest_paths(manifest)
    folders = {p.rsplit("/", i)[0] for p in listed for i in range(1, p.count("/") + 1)}
    for rel, kind in _entries(path):
        if kind == "link":
            return f"{rel} is a link"
        if kind == "folder" and rel not in folders:
            return f"{rel}/ is not a folder its {MANIFEST} lists"
        if kind == "file" and rel not in listed:
            return f"{rel} is not a file its {MANIFEST} lists"
    return None


def contains(outer: str, inner: str) -> bool:
    """Whether `inner` is `outer` or lies below it."""
    if is_local(outer) != is_local(inner):
        return False
    if is_local(outer):
        outer, inner = os.path.realpath(outer), os.path.realpath(inner)
        return os.path.commonpath([outer, inner]) == outer
    outer, inner = outer.rstrip("/") + "/", inner.rstrip("/") + "/"
    return inner.startswith(outer)


def _rename_tree(src: str, dst: str, last: str | None = None) -> None:
    """Move every file below `src` to the same place below `dst` (`last` moved last)."""
    if is_local(src):
        os.replace(src, dst)
        return
    files = list_files(src)
    final = [f for f in files if last is not None and f.endswith("/" + last)]
    for group in ([f for f in files if f not in final], final):
        if group:
            FileSystems.rename(group, [dst.rstrip("/") + f[len(src.rstrip("/")):] for f in group])


def publish(staging: str, output: str) -> None:
    """Move a finished staging directory to `output`. An existing output is first moved aside
    (locally one rename) and deleted only once the new one is in place; if the move fails it is
    put back. On object stores `manifest.json` is moved last, so readers that wait for it never
    see a partial dataset."""
    previous = None
    if (os.path.exists(output) if is_local(output) else is_nonempty_dir(output)):
        previous = output.rstrip("/") + PREVIOUS_MARK + uuid.uuid4().hex[:12]
        _rename_tree(output, previous, last=MANIFEST)
    try:
        _rename_tree(staging, output, last=MANIFEST)
    except BaseException:
        if previous is not None:
            log.error("publishing failed; putting the previous output back from %s", previous)
            delete_tree(output)
            _rename_tree(previous, output, last=MANIFEST)
        raise
    if previous is not None:
        delete_tree(previous)


def _lock_holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"


@contextlib.contextmanager
def output_lock(output: str) -> Iterator[Callable[[], None]]:
    """Hold `OUTPUT.armdata-lock` (beside the resolved output) while building; a second build to
    the same output, by any alias, fails with UsageError naming the holder. Locally an flock (released by the kernel if the process dies);
    on object stores a token file, checked again by the yielded function before publishing."""
    path = resolve(output).rstrip("/") + LOCK_SUFFIX
    if not is_local(output):
        if exists(path):
            raise UsageError(f"another build is writing to {output} ({read_bytes(path).decode()}"
                             f"); if none is running, delete {path}")
        token = f"{_lock_holder()} token {uuid.uuid4().hex}"
        write_bytes(path, token.encode())

        def still_ours() -> None:
            if not exists(path) or read_bytes(path).decode() != token:
                raise UsageError(f"another build took the lock {path} of {output}; "
                                 f"not publishing over it")
        try:
            yield still_ours
        finally:
            if exists(path) and read_bytes(path).decode() == token:
                FileSystems.delete([path])
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace") or "unknown"
            os.close(fd)
            raise UsageError(f"another build is writing to {output} ({holder}); wait for it "
                             f"or choose another --output") from None
        try:   # the holder may have removed the file between our open and our lock
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, _lock_holder().encode())
    try:
        yield lambda: None
    finally:
        os.unlink(path)
        os.close(fd)


class HashingWriter:
    """A write-only file wrapper that computes the sha256 of what passes through, on a thread of
    its own (hashlib releases the GIL), so that hashing a shard overlaps with encoding it. At
    most HASH_QUEUE chunks wait to be hashed; `sha256` is complete once the writer is closed."""

    HASH_QUEUE = 16

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False
        self._chunks: queue.Queue[memoryview | None] = queue.Queue(self.HASH_QUEUE)
        self._hasher = threading.Thread(target=self._hash, name="sha256", daemon=True)
        self._hasher.start()

    def _hash(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self.sha256.update(chunk)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        if not view.readonly:   # the caller may reuse its buffer once this returns
            view = memoryview(bytes(view))
        self.raw.write(view)
        self._chunks.put(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if not self.closed:
            self._chunks.put(None)
            self._hasher.join()
            self.raw.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False
