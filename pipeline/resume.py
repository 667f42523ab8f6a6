"""Resuming a killed build, and cleaning up after builds that died.

A build spills every finished episode into a persistent work directory beside the output,
`OUTPUT.armdata-work-<key>/episodes/`, where `<key>` hashes everything that defines the
episodes' rows (the manifest's base: config, source, split, stages, stage options, statistics
source). Per episode (file names from sha256 of the episode id):

    <h>.arrow   its rows, as `armdata.pipeline.sinks.writer.spill_episode` writes them
    <h>.json    the commit record, written last: episode id, work key, the spill's size and
                CRC32C, the summary that statistics and sharding need, and every rejection
                recorded while producing the episode

Locally both are written under temporary names and committed together: both synced, renamed
(spill first), then their directory synced, so no name ever points at unwritten data and a
committed episode survives a crash. The commits of a bundle's episodes run on a few threads while
the next episodes are processed, and the bundle ends only once all are durable (`FinishEpisode`).
Only an episode with a valid commit record whose spill has the recorded size and CRC32C counts
as finished, so a missing, half-written or damaged spill is never reused
(the episode is recomputed, with a warning and the `resume/bad_records` counter). A rerun of the
same command finds the same directory: `ReuseLookup` routes its finished episodes around the
stages (depth, trace, ...) straight to the writer, and the output is byte-identical to an
uninterrupted build. A changed command hashes to another directory; a source rewritten at the same
path, or other armdata code, is told apart by the directory's `identity.json` (see
`pipeline.identity`), and its work is discarded with a warning. The work directory is deleted after
a successful publish; a failed or killed build keeps it.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.writer import EpisodeSummary, spill_episode
from armdata.schemas.episode import Episode, Rejection

log = logging.getLogger(__name__)

WORK_MARK = ".armdata-work-"
COMMIT_THREADS = 4   # episode commits syncing at once (`FinishEpisode`)
REJECTED = "rejected"
REUSED = "reused"


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-resume", action="store_true",
                   help="ignore episodes finished by an earlier, killed run of the same command "
                        "and build everything again")
    p.add_argument("--clean-stale", action="store_true",
                   help="delete staging and work directories that other (dead) builds left "
                        "beside the output")


def work_key(manifest_base: dict[str, Any]) -> str:
    """A hash of everything that defines the spilled rows: any changed field gives a new key."""
    text = json.dumps(manifest_base, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def work_dir(output: str, key: str) -> str:
    return output.rstrip("/") + WORK_MARK + key


def episodes_dir(work: str) -> str:
    return storage.join(work, "episodes")


def record_paths(episodes: str, episode_id: str) -> tuple[str, str]:
    """(spill, commit record) of an episode."""
    name = hashlib.sha256(episode_id.encode()).hexdigest()[:32]
    base = storage.join(episodes, name[:2], name)
    return base + ".arrow", base + ".json"


def count_finished(episodes: str) -> int:
    """Committed episodes in a local work directory (for the progress bar)."""
    return sum(f.endswith(".json") for _, _, files in os.walk(episodes) for f in files)


@dataclass
class Pending:
    """An episode on its way through the stages, with every rejection recorded so far, so that
    its commit record can hold them. `episode` is None once a stage rejected all of it."""
    episode_id: str
    episode: Episode | None
    rejections: list[Rejection] = field(default_factory=list)


def pack_floats(values: np.ndarray) -> str:
    """A float32 array as base64 of its little-endian bytes: exact, and 20 times cheaper to
    write than JSON numbers (a record is written per episode)."""
    return base64.b64encode(np.ascontiguousarray(values, "<f4").tobytes()).decode("ascii")


def unpack_floats(text: str, rows: int) -> np.ndarray:
    """`pack_floats` read back as `rows` rows of float32."""
    return np.frombuffer(base64.b64decode(text, validate=True), "<f4").astype(np.float32) \
        .reshape(rows, -1)


def read_record(episodes: str, key: str, episode_id: str
                ) -> tuple[EpisodeSummary | None, list[Rejection]] | None:
    """The finished episode's summary (None if a stage rejected all of it) and rejections, or None
    if it has no commit record. Raises ValueError for a record that must not be trusted: not
    JSON, another episode's or command's, or with a spill that is not the recorded size and
    CRC32C."""
    spill, record_path = record_paths(episodes, episode_id)
    if not storage.exists(record_path):
        return None
    try:
        record = json.loads(storage.read_bytes(record_path))
        if record["key"] != key or record["episode_id"] != episode_id:
            raise ValueError(f"it is {record['episode_id']}'s of work key {record['key']}")
        rejections = [Rejection(**r) for r in record["rejections"]]
        s = record["spill"]
        if s is None:
            return None, rejections
        if storage.size(spill) != s["bytes"]:
            raise ValueError(f"{spill} does not have the recorded {s['bytes']} bytes")
        if storage.crc32c_of(spill) != s["crc32c"]:
            raise ValueError(f"{spill} does not have the recorded CRC32C (damaged on disk)")
        return EpisodeSummary(episode_id, spill, s["rows"], s["nbytes"],
                              unpack_floats(s["actions"], s["rows"]),
                              unpack_floats(s["states"], s["rows"])
                              ), rejections
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"bad commit record {record_path}: {exc}") from exc


class ReuseLookup(beam.DoFn):
    """Finished episodes skip the stages: their summary goes to the REUSED output and their
    recorded rejections to REJECTED; the rest continue to the stages as `Pending`."""

    def __init__(self, episodes: str, key: str) -> None:
        self.episodes = episodes
        self.key = key

    def setup(self) -> None:
        self.reused = beam.metrics.Metrics.counter("resume", "episodes_reused")
        self.bad = beam.metrics.Metrics.counter("resume", "bad_records")

    def process(self, episode: Episode) -> Iterator[Any]:
        try:
            found = read_record(self.episodes, self.key, episode.episode_id)
        except ValueError as exc:
            log.warning("recomputing %s: %s", episode.episode_id, exc)
            self.bad.inc()
            found = None
        if found is None:
            yield Pending(episode.episode_id, episode)
            return
        summary, rejections = found
        self.reused.inc()
        for r in rejections:
            yield TaggedOutput(REJECTED, r)
        if summary is not None:
            yield TaggedOutput(REUSED, summary)


class FinishEpisode(beam.DoFn):
    """Pending → spill + commit record; yields the summary and the rejections.

    Locally both files are written under temporary names and committed together by
    `storage.make_durable` (both synced, renamed spill first, their directory synced) on a few
    threads while the next episodes are processed: the syncs of several episodes overlap and
    the file system groups them, instead of each one stalling the stages. A bundle ends only
    once every commit it started is durable, and nothing reads a spill before its bundle ended
    (the shard writer runs after the statistics barrier); a failed commit (disk full) fails the
    bundle."""

    def __init__(self, episodes: str, key: str) -> None:
        self.episodes = episodes
        self.key = key

    def setup(self) -> None:
        self.rows = beam.metrics.Metrics.counter("spill", "rows")
        self.committer = ThreadPoolExecutor(COMMIT_THREADS, thread_name_prefix="armdata-commit")

    def start_bundle(self) -> None:
        self.commits: list[Future] = []

    def process(self, pending: Pending) -> Iterator[Any]:
        spill, record_path = record_paths(self.episodes, pending.episode_id)
        files = [spill, record_path] if pending.episode is not None else [record_path]
        local = storage.is_local(spill)
        written = {p: storage.temp_path(p) if local else p for p in files}
        try:
            summary = self._write(pending, spill, record_path, written)
        except BaseException:
            if local:
                for path in written.values():
                    storage.remove_quietly(path)
            raise
        if local:
            self.commits.append(self.committer.submit(
                storage.make_durable, [(written[p], p) for p in files]))
        for r in pending.rejections:
            yield TaggedOutput(REJECTED, r)
        if summary is not None:
            yield summary

    def _write(self, pending: Pending, spill: str, record_path: str,
               written: dict[str, str]) -> EpisodeSummary | None:
        """Write the spill and then the record (with the spill's CRC32C: it detects damage as
        well as a cryptographic hash, at a tenth of the cost) to their `written` names; returns
        the summary (None for an episode a stage rejected)."""
        summary, entry = None, None
        if pending.episode is not None:
            summary, payload = spill_episode(pending.episode, spill)
            storage.write_bytes(written[spill], payload)
            self.rows.inc(summary.rows)
            entry = {"bytes": len(payload), "crc32c": storage.crc32c(payload),
                     "rows": summary.rows, "nbytes": summary.nbytes,
                     "actions": pack_floats(summary.actions),
                     "states": pack_floats(summary.states)}
        record = {"key": self.key, "episode_id": pending.episode_id,
                  "rejections": [r.to_dict() for r in pending.rejections], "spill": entry}
        storage.write_bytes(written[record_path], json.dumps(record, sort_keys=True).encode())
        return summary

    def finish_bundle(self) -> None:
        commits, self.commits = self.commits, []
        wait(commits)
        for commit in commits:
            commit.result()   # raises the first failure

    def teardown(self) -> None:
        self.committer.shutdown()


def tree_size(prefix: str) -> int:
    """Bytes of all files below a directory/prefix."""
    if storage.is_local(prefix):
        return sum(os.path.getsize(f) for f in storage.list_files(prefix))
    pattern = prefix.rstrip("/") + "/**"
    return sum(m.size_in_bytes for r in FileSystems.match([pattern]) for m in r.metadata_list)


def leftover_dirs(output: str) -> list[str]:
    """Staging and work directories of any build of `output`, sorted."""
    base = output.rstrip("/")
    marks = (storage.STAGING_MARK, WORK_MARK)
    if storage.is_local(base):
        parent, name = os.path.split(os.path.abspath(base))
        if not os.path.isdir(parent):
            return []
        return sorted(os.path.join(os.path.dirname(base), d) for d in os.listdir(parent)
                      if d.startswith(name) and d[len(name):].startswith(marks))
    found = set()
    for r in FileSystems.match([base + ".armdata-*/**"]):
        for m in r.metadata_list:
            top = m.path[len(base):].split("/")[0]      # e.g. ".armdata-work-<key>"
            if top.startswith(marks):
                found.add(base + top)
    return sorted(found)


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def handle_stale(output: str, work: str, clean: bool) -> None:
    """Report (path, size) every staging/work directory beside the output except this command's
    work directory, and delete them when asked."""
    for path in leftover_dirs(output):
        if path.rstrip("/") == work.rstrip("/"):
            continue
        size = human_bytes(tree_size(path))
        if clean:
            storage.delete_tree(path)
            log.warning("deleted stale build directory %s (%s)", path, size)
        else:
            log.warning("stale build directory %s (%s) left by another build; --clean-stale "
                        "deletes it", path, size)


IDENTITY = "identity.json"   # in the work directory: the source and code its episodes came from


def prepare_work_dir(output: str, manifest_base: dict[str, Any], identity: dict[str, Any],
                     resume: bool, clean_stale: bool) -> tuple[str, str]:
    """This command's work directory and key, after reporting/cleaning the stale ones. Work made
    from another source identity or armdata code (`pipeline.identity`) is discarded with a
    warning; the key covers the identity too, so no commit record of other work is trusted."""
    work = work_dir(output, work_key(manifest_base))
    key = work_key({**manifest_base, "identity": identity})
    handle_stale(output, work, clean_stale)
    marker = storage.join(work, IDENTITY)
    if not resume:
        storage.delete_tree(work)
    elif storage.is_nonempty_dir(work):
        found = json.loads(storage.read_bytes(marker)) if storage.exists(marker) else {}
        changed = [what for what in ("source", "code") if found.get(what) != identity[what]]
        if changed:
            log.warning("discarding %s: its episodes were made from another %s; building them "
                        "again", work, " and ".join(
                            {"source": "source (same path, other content)",
                             "code": "armdata code"}[c] for c in changed))
            storage.delete_tree(work)
        else:
            log.info("resuming: episodes finished by an earlier run of this command are reused "
                     "from %s", work)
    storage.write_bytes(marker, json.dumps(identity, sort_keys=True).encode())
    return work, key
