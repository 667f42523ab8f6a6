"""A build that is not published: what is cleaned up, what is kept, and what it says."""
from __future__ import annotations

import collections
import errno
import json
import logging
import os
from typing import Any

from armdata.errors import BuildFailed, UsageError, causes
from armdata.pipeline import resume
from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.finalize import REJECTED_PATH, manifest_text

log = logging.getLogger(__package__)   # the command's name, as for every line of the build

FAILED_SUFFIX = ".armdata-failed"   # beside the output: what a build that was not published found


def clean_up_failed(exc: BaseException, staging: str, work: str, output: str) -> None:
    """After a build that failed with `exc`: delete its staging directory (and its work
    directory when no episode was finished), then raise what the user is told instead of `exc`
    (Ctrl-C, a full disk: what was kept), or log it and return for `exc` to be raised."""
    storage.delete_tree(staging)
    kept = (f"nothing was published to {output}; finished episodes are kept in "
            f"{work} for a rerun of the same command")
    if not storage.is_nonempty_dir(resume.episodes_dir(work)):   # only its identity.json
        storage.delete_tree(work)
        kept = f"nothing was published to {output} and no episode was finished"
    if any(isinstance(e, KeyboardInterrupt) for e in causes(exc)):   # Ctrl-C
        raise KeyboardInterrupt(kept) from exc
    full = disk_full(exc)
    if full:
        raise BuildFailed(f"disk full ({full}); {kept} once there is space") from exc
    if not isinstance(exc, (BuildFailed, UsageError)):   # those say so themselves
        log.error("build failed; %s", kept)


def disk_full(exc: BaseException) -> str | None:
    """The "no space left" message if the build failed for lack of disk space: an ENOSPC
    OSError here, or its text in the error a worker process sent back."""
    errors = list(causes(exc))
    ours = [e for e in errors if isinstance(e, OSError) and e.errno == errno.ENOSPC]
    if ours:
        return str(ours[0])
    text = os.strerror(errno.ENOSPC)
    return text if any(text in str(e) for e in errors) else None


def failed_dir(output: str) -> str:
    return output.rstrip("/") + FAILED_SUFFIX


def reject_fraction(counts: dict[str, int]) -> float:
    """The larger of the rejected fractions of input episodes and input steps."""
    return max(counts["episodes_rejected"] / max(counts["episodes_in"], 1),
               counts["steps_rejected"] / max(counts["steps_in"], 1))


def check_result(manifest: dict[str, Any], staging: str, output: str, max_fraction: float) -> None:
    """Refuse to publish a dataset without rows, or one that rejected more than `max_fraction`
    of its input: keep its manifest and rejections in OUTPUT.armdata-failed/ and say why."""
    c = manifest["counts"]
    if c["steps_out"] > 0 and reject_fraction(c) <= max_fraction:
        return
    failed = failed_dir(output)
    storage.delete_tree(failed)
    rejected = storage.read_bytes(storage.join(staging, REJECTED_PATH))
    storage.write_bytes(storage.join(failed, "rejected.jsonl"), rejected)
    storage.write_bytes(storage.join(failed, "report.json"), manifest_text(manifest).encode())
    reasons = collections.Counter(
        f"{r['stage']}: {r['reason'][:120]}" for r in map(json.loads, rejected.splitlines()))
    common = "; ".join(f"{n}x {reason}" for reason, n in reasons.most_common(2))
    what = ("no row was written" if c["steps_out"] == 0 else
            f"{reject_fraction(c):.0%} of the input was rejected (--max-reject-fraction "
            f"{max_fraction})")
    raise BuildFailed(f"{what}: {c['episodes_rejected']} of {c['episodes_in']} episodes and "
                      f"{c['steps_rejected']} of {c['steps_in']} steps rejected; nothing was "
                      f"published to {output}. Most common: {common or 'none'}. All rejections: "
                      f"{storage.join(failed, 'rejected.jsonl')}")
