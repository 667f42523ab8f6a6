"""Training checkpoints that load without running code and belong to one run.

`checkpoints/step_N/` holds `model/` (safetensors), `state.pt` (optimizer, schedule, loader position
and RNG states as tensors and plain values: `torch.load(weights_only=True)` reads it, so a crafted
pickle is refused before it runs) and `checkpoint.json` (written last: the run identity and each
file's size and sha256). `--resume` takes the newest checkpoint whose files all match, and refuses
one written by a run with other data, model or training options.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from armdata.local_files import fsync, sha256_file
from armdata.torch_files import first_sentences, load_weights_only
from armdata.errors import UsageError

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.json"
STATE_FILE = "state.pt"
STATE_KEYS = {"step", "optimizer", "scheduler", "loader", "rng"}
# What `armdata train` writes into --out: --overwrite deletes these and nothing else.
RUN_ENTRIES = ("checkpoints", "metrics.jsonl", "tensorboard", "model")
# Options a resumed run must share with its checkpoint: they shape the model, the data order
# (streams per rank and worker, batch sizes, seed) or the schedule; the sample options
# (`SampleOptions.to_json`, with the sample format version) are added to them.
RUN_OPTIONS = ("model", "lora", "eval_data", "holdout_shards", "max_steps", "micro_batch", "accum",
               "lr", "min_lr_ratio", "warmup", "weight_decay", "clip", "workers", "block", "seed")
SAMPLE_FORMAT_KEY = "sample_format_version"


class CheckpointError(UsageError):
    """--out or --resume refused: one line, exit 2."""


def check_out(out: Path, resume: bool, overwrite: bool) -> list[Path]:
    """What a fresh run must delete first. A fresh run into a non-empty --out is refused without
    --overwrite: a later --resume would continue from the old run's checkpoints."""
    if resume and overwrite:
        raise CheckpointError("--resume continues the run in --out, --overwrite deletes it: "
                              "choose one")
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file, not a directory")
    entries = sorted(out.iterdir()) if out.is_dir() and not resume else []
    if entries and not overwrite:
        raise CheckpointError(f"--out {out} is not empty (it holds {entries[0].name}): continue "
                              f"its run with --resume, start over with --overwrite, or choose "
                              f"another --out")
    foreign = [e.name for e in entries if e.name not in RUN_ENTRIES]
    if foreign:
        raise CheckpointError(f"--overwrite: {out / foreign[0]} was not written by armdata train; "
                              f"refusing to delete it (choose another --out)")
    return entries


def clear(entries: list[Path]) -> None:
    for e in entries:
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e)
        else:
            e.unlink()
        log.info("--overwrite: deleted %s", e)


def data_identity(sources: list[Any]) -> list[dict[str, Any]]:
    """Each dataset's weight, row groups and manifest (its shards' checksums): a dataset rebuilt
    at the same path is another dataset."""
    def digest(source: Any) -> dict[str, Any]:
        groups = [(os.path.basename(u.path), u.group, u.rows, u.part, u.parts)
                  for u in source.units]
        manifest = source.root.rstrip("/") + "/manifest.json"
        fs = source.fs
        return {"weight": source.weight,
                "row_groups": hashlib.sha256(json.dumps(groups).encode()).hexdigest(),
                "manifest": hashlib.sha256(fs.cat_file(manifest)).hexdigest()
                if fs is not None and fs.exists(manifest) else None}
    return [digest(s) for s in sources]


def run_identity(args: Any, world: int, sources: list[Any], eval_sources: list[Any],
                 sample: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it (JSON-normalised); `sample` is
    the run's `SampleOptions.to_json()`."""
    return json.loads(json.dumps({
        "data": data_identity(sources), "eval": data_identity(eval_sources), "world": world,
        "options": {**{o: getattr(args, o) for o in RUN_OPTIONS}, **sample}}))


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two run identities, in option terms."""
    out = []
    if saved.get("data") != current["data"]:
        out.append("--data (other datasets, weights or dataset contents)")
    if saved.get("eval") != current["eval"]:
        out.append("the evaluation data")
    if saved.get("world") != current["world"]:
        out.append(f"number of processes {saved.get('world')} there, {current['world']} here")
    theirs = saved.get("options", {})
    if theirs.get(SAMPLE_FORMAT_KEY, 1) != current["options"][SAMPLE_FORMAT_KEY]:
        return out + [f"sample format {theirs.get(SAMPLE_FORMAT_KEY, 1)} there (an older armdata), "
                      f"{current['options'][SAMPLE_FORMAT_KEY]} here"]
    out += [f"--{o.replace('_', '-')} {theirs.get(o)} there, {v} here"
            for o, v in current["options"].items() if theirs.get(o) != v]
    return out


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values (no numpy arrays: weights-only loadable)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = rng["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_checkpoint(out: Path, step: int, run: dict[str, Any], state: dict[str, Any],
                    save_model: Callable[[Path], None]) -> Path:
    """Write to a temporary directory, fsync, then rename: a half-written checkpoint is never
    picked up, and checkpoint.json (written last) vouches for every other file."""
    final = out / "checkpoints" / f"step_{step:08d}"
    tmp = final.with_name("." + final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(tmp / "model")
    torch.save({"step": step, **state}, tmp / STATE_FILE)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    for p in files:
        fsync(p)
    meta = {"step": step, "run": run,
            "files": {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size,
                                                      "sha256": sha256_file(p)} for p in files}}
    (tmp / CHECKPOINT_FILE).write_text(json.dumps(meta, indent=1))
    fsync(tmp / CHECKPOINT_FILE)
    for d in sorted({p.parent for p in files} | {tmp}):
        fsync(d)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync(final.parent)
    return final


def read_checkpoint(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """checkpoint.json and state.pt of `ckpt` once every listed file matches its size and sha256;
    ValueError (one line) when anything is missing, cut, changed or refused."""
    meta_path = ckpt / CHECKPOINT_FILE
    try:
        meta = json.loads(meta_path.read_text())
        files, run = meta["files"], meta["run"]
        listed = {rel: (int(f["size"]), str(f["sha256"])) for rel, f in files.items()}
    except FileNotFoundError:
        raise ValueError(f"{meta_path} is missing (an older armdata's or an unfinished "
                         f"checkpoint)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{meta_path}: unreadable ({first_sentences(str(exc))})") from exc
    if STATE_FILE not in listed:
        raise ValueError(f"{meta_path} does not list {STATE_FILE}")
    for rel, (size, sha) in listed.items():
        path = ckpt / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or path.is_symlink():
            raise ValueError(f"{meta_path}: {rel!r} is not a file of the checkpoint")
        if not path.is_file() or path.stat().st_size != size or sha256_file(path) != sha:
            raise ValueError(f"{path} is missing, truncated or changed since it was saved")
    state = load_weights_only(ckpt / STATE_FILE, "training state")
    if not isinstance(state, dict) or not STATE_KEYS <= state.keys():
        raise ValueError(f"{ckpt / STATE_FILE}: not an armdata training state")
    return run, state


def find_resume(out: Path, run: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The newest usable checkpoint of this run and its state; older ones stand in (with a
    warning) for unusable newer ones; one of another run is refused."""
    checkpoints = sorted((out / "checkpoints").glob("step_*"), reverse=True)   # temp dirs: "."
    if not checkpoints:
        log.warning("--resume: no checkpoint in %s, starting fresh", out / "checkpoints")
        return None
    problems = []
    for ckpt in checkpoints:
        try:
            saved, state = read_checkpoint(ckpt)
        except ValueError as exc:
            log.warning("--resume: skipping %s: %s", ckpt.name, exc)
            problems.append(str(exc))
            continue
        differ = differences(saved, run)
        if differ:
            raise CheckpointError(f"--resume: {ckpt} belongs to another run ({'; '.join(differ)}): "
                                  f"resume with its options, or start over with --overwrite")
        return ckpt, state
    raise CheckpointError(f"--resume: no usable checkpoint in {out / 'checkpoints'} (newest: "
                          f"{problems[0]}); start over with --overwrite")
