"""The bundled trainer on a small built synthetic dataset and a tiny random-weight VLM (LLaVA
architecture, a byte-level vocabulary; the answer round trip also on the real Qwen2 tokenizer built
offline, which the demo trains with): loader splitting, mixture, resume and bad rows; the sample
format's round trip; overfitting + predict; exact resume; DDP (slow)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from armdata.testing.synthetic import write_synthetic_rlds
from tests.conftest import REPO, SHARED, armdata, build
from armdata.trainer.data import Mixture, RowStream, StreamingLoader, open_source, parse_data, split_units
from armdata.trainer.predict import answer_text, parse_answer
from armdata.schemas.output import image_bytes
from armdata.trainer.samples import IGNORE, Formatter, SampleOptions
from armdata.testing.tiny_vlm import save_tiny_vlm
from armdata.trainer.tokens import DEPTH_TOKENS, add_answer_tokens
from armdata.trainer.train import lr_factor
from armdata.transforms.actions import VOCAB_SIZE, decode

VQVAE = SHARED / "fixtures" / "vqvae_molmoact" / "vqvae.pt"
# The cheapest answer (no depth, no trace, one step, one id per action bin).
SMALL = ["--parts", "none", "--no-chunk", "--action-format", "ids"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    if not VQVAE.exists():
        pytest.skip("../shared/fixtures/vqvae_molmoact is not present")
    tmp = tmp_path_factory.mktemp("trainer_data")
    src = write_synthetic_rlds(tmp / "src", num_episodes=5, num_steps=8, image_size=(64, 64), seed=3)
    out = tmp / "out"
    assert build("--config", "armdata_demo", "--source", src, "--output", out,
                 "--stages", "actions,depth,trace", "--depth-source", "sensor", "--vqvae", VQVAE,
                 "--localizer", "projection", "--tracker", "lk", "--depth-device", "cpu",
                 "--trace-device", "cpu", "--num-shards", "3") == 0
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Trainer mechanics: a byte-level vocabulary keeps the softmax (and a CPU step) small."""
    return save_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm") / "model", vocab="bytes")


def load_with_tables(model_dir: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    return processor, add_answer_tokens(processor.tokenizer, model), model


@pytest.fixture(scope="module")
def processor_tables(tiny):
    return load_with_tables(tiny)


@pytest.fixture(scope="module")
def qwen2_tables(tmp_path_factory):
    """The real Qwen2 vocabulary: action bins are its ids 151643 - bin (SPEC §4)."""
    return load_with_tables(save_tiny_vlm(tmp_path_factory.mktemp("qwen2_vlm") / "model",
                                          vocab="qwen2"))


def table(root: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((root / "data").glob("*.parquet")))


def rewrite(src: Path, dst: Path, t: pa.Table, shards: int = 1, row_group: int | None = None) -> Path:
    """A dataset directory holding `t` in `shards` files (row groups of `row_group` rows)."""
    (dst / "data").mkdir(parents=True)
    shutil.copy(src / "dataset_statistics.json", dst)
    bounds = np.linspace(0, t.num_rows, shards + 1).astype(int)
    for i in range(shards):
        pq.write_table(t.slice(bounds[i], bounds[i + 1] - bounds[i]),
                       dst / "data" / f"train-{i:05d}-of-{shards:05d}.parquet",
                       row_group_size=row_group)
    return dst


def keys(rows) -> list[tuple[str, int]]:
    return [(r["episode_id"], r["step"]) for r in rows]


# --- loader ------------------------------------------------------------------------------------

def test_parse_data_weights():
    assert parse_data("a:0.4,gs://b/c:0.6, hf://datasets/o/n") == [
        ("a", 0.4), ("gs://b/c", 0.6), ("hf://datasets/o/n", 1.0)]
    with pytest.raises(ValueError):
        parse_data("a:zero")


@pytest.mark.parametrize("layout", [dict(shards=2, row_group=7), dict(shards=3, row_group=None)])
def test_every_row_once_per_epoch_across_ranks_and_workers(built, tmp_path, layout):
    """2 ranks × 3 workers over 14-ish row groups, and over 3 row groups (fewer than streams)."""
    t = table(built)
    source = open_source(str(rewrite(built, tmp_path / "d", t, **layout)))
    streams = split_units(source.units, 6)
    if layout["row_group"] is None:
        assert len(source.units) == 3 and all(u.parts == 2 for s in streams for u in s)
    everything = keys(t.to_pylist())
    for epoch in range(2):
        seen = []
        for g, units in enumerate(streams):
            st = RowStream(source, units, [0, 0, g], block=2, columns=["episode_id", "step"])
            seen += keys(st.rows(epoch * st.epoch_rows, epochs=epoch + 1))
        assert Counter(seen) == Counter(everything) and len(seen) == len(everything)
    st = RowStream(source, streams[0], [0, 0, 0], block=2, columns=["episode_id", "step"])
    first, second = list(st.rows(0, epochs=2))[:st.epoch_rows], list(st.rows(st.epoch_rows, 2))
    assert sorted(keys(first)) == sorted(keys(second)) and keys(first) != keys(second)


class RowIds:
    """A formatter stand-in that keeps the row's identity (the loader's bookkeeping under test)."""

    def __call__(self, row, rng, counters):
        return {"input_ids": torch.tensor([row["step"]]),
                "meta": {"dataset": row["dataset"], "key": (row["episode_id"], row["step"])}}


def test_mixture_weights(built, tmp_path):
    t = table(built)
    other = t.set_column(t.schema.get_field_index("dataset"), "dataset",
                         pa.array(["other"] * t.num_rows))
    a = open_source(str(rewrite(built, tmp_path / "a", t)), 3.0)
    b = open_source(str(rewrite(built, tmp_path / "b", other)), 1.0)
    loader = StreamingLoader([a, b], RowIds, 50, rank=0, world=1, workers=1, seed=1)
    names = [m["dataset"] for batch, _ in zip(loader, range(40)) for m in batch["meta"]]
    assert abs(names.count("other") / len(names) - 0.25) < 0.03
    mix = Mixture([3.0, 1.0], [1, 0, 7919])
    draws = np.concatenate([mix.chunk(0), mix.chunk(1)])[:5000]
    assert mix.positions(5000) == np.bincount(draws, minlength=2).tolist()


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_exactly(built, workers):
    source = open_source(str(built))

    def run(state, n):
        ds = StreamingLoader([source], RowIds, 3, rank=0, world=1, workers=2, seed=4, block=1,
                             state=state)
        dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
        out, received = [], {}
        for batch, _ in zip(dl, range(n)):
            out.append([m["key"] for m in batch["meta"]])
            received[batch["loader"]["stream"]] = batch["loader"]
        return out, received

    straight, _ = run(None, 30)
    first, received = run(None, 11)
    from armdata.trainer.data import loader_state
    rest, _ = run(loader_state(11, received, 4), 19)
    assert first + rest == straight


def test_corrupt_jpeg_skipped_and_counted_and_image_struct(built, tmp_path, processor_tables):
    processor, tables, _ = processor_tables
    t = table(built)
    images = [image_bytes(cell) for cell in t.column("image").to_pylist()]   # as built: v2 structs
    struct = pa.array([{"bytes": b, "path": None} for b in images],
                      pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    hf = t.set_column(t.schema.get_field_index("image"), "image", struct)
    images[3] = b"\xff\xd8\xff\xe0 not a jpeg"             # and schema v1's plain bytes
    bad = t.set_column(t.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))
    results = []
    for name, tab in (("bad", bad), ("hf", hf)):
        source = open_source(str(rewrite(built, tmp_path / name, tab, shards=2)))
        loader = StreamingLoader([source], lambda: Formatter(processor, tables, SampleOptions()), 4,
                                 rank=0, world=1, workers=1, seed=0, shuffle=False, epochs=1)
        batches = list(loader)
        first = batches[0]
        results.append(([m["step"] for b in batches for m in b["meta"]],
                        batches[-1]["loader"]["counters"],
                        first["input_ids"][0][first["attention_mask"][0] == 1]))
    (steps, counters, ids), (hf_steps, hf_counters, hf_ids) = results
    assert len(steps) == t.num_rows - 1 and counters["corrupt_image"] == 1
    assert counters["samples"] == t.num_rows - 1
    assert len(hf_steps) == t.num_rows and "corrupt_image" not in hf_counters
    assert torch.equal(ids, hf_ids)   # row 0 formats the same from v1 bytes and from a v2 struct
    assert image_bytes({"bytes": b"x", "path": "a.jpg"}) == b"x"


# --- samples -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,vocab", [("ids", "bytes"), ("text", "bytes"), ("ids", "qwen2")])
def test_answer_round_trip(built, request, fmt, vocab):
    processor, tables, model = request.getfixturevalue(
        "qwen2_tables" if vocab == "qwen2" else "processor_tables")
    row = table(built).slice(5, 1).to_pylist()[0]
    assert row["depth_codes"] and row["trace"]
    sample = Formatter(processor, tables, SampleOptions(action_format=fmt, drawn_trace=0.0))(
        row, np.random.default_rng(0), {})
    answer = sample["labels"][sample["labels"] != IGNORE].tolist()
    if fmt == "ids":   # one id per action bin (SPEC §4), not 2-4 BPE pieces
        assert sum(1 for i in answer if i in set(tables["action"])) == 56
    if vocab == "qwen2":
        assert tables["action"][:2] == [VOCAB_SIZE - 1, VOCAB_SIZE - 2]
    parsed = parse_answer(answer_text(answer, processor.tokenizer, tables))
    assert parsed["depth_codes"] == list(row["depth_codes"])
    assert parsed["traces"] == [row["trace"]] * 2     # the fine-tune form's left and right
    assert parsed["action_bins"] == row["action_chunk_bins"]


def test_depth_tokens_regular_and_mean_initialised(processor_tables, tiny):
    processor, tables, model = processor_tables
    tok = processor.tokenizer
    ids = [tables["depth_start"], tables["depth"][7], tables["depth_end"]]
    assert tok.decode(ids, skip_special_tokens=True) == "<DEPTH_START><DEPTH_7><DEPTH_END>"
    emb = model.get_input_embeddings().weight
    first = min(tok.convert_tokens_to_ids(DEPTH_TOKENS))
    assert torch.allclose(emb[tables["depth"][7]], emb[:first].mean(0), atol=1e-6)
    assert emb.shape[0] == len(tok)


def test_no_embedding_shrink(tiny):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny)
    model = AutoModelForImageTextToText.from_pretrained(tiny)
    model.resize_token_embeddings(len(processor.tokenizer) + 500)
    rows = model.get_input_embeddings().weight.shape[0]
    add_answer_tokens(processor.tokenizer, model)
    assert model.get_input_embeddings().weight.shape[0] == rows   # 386 new ids fit: kept


def test_lr_schedule():
    f = [lr_factor(s, 10, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and f[10] == 1.0
    assert f[-1] == pytest.approx(0.1, abs=1e-3) and all(a >= b for a, b in zip(f[10:], f[11:]))


# --- training ----------------------------------------------------------------------------------

def losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [e["loss"] for e in lines if "loss" in e]


@pytest.mark.slow
def test_overfit_then_predict(built, tiny, tmp_path, capsys):
    t = table(built)
    pick = t.take([0, t.num_rows - 1])          # two frames of different episodes
    data = rewrite(built, tmp_path / "two", pick)
    run = tmp_path / "run"
    assert armdata("train", "--data", data, "--out", run, "--model", tiny, *SMALL,
                   "--max-steps", "120", "--micro-batch", "2", "--workers", "0", "--lr", "1e-2",
                   "--warmup", "4", "--log-every", "1", "--save-every", "100") == 0
    loss = losses(run)
    assert loss[-1] < 0.05 * loss[0], loss
    stats = json.loads((built / "dataset_statistics.json").read_text())
    (name, ds_stats), = stats.items()
    for i, row in enumerate(pick.to_pylist()):
        (tmp_path / f"{i}.jpg").write_bytes(image_bytes(row["image"]))
        (tmp_path / f"{i}_wrist.jpg").write_bytes(image_bytes(row["wrist_image"]))
        capsys.readouterr()
        assert armdata("predict", "--model", run / "model", "--image", tmp_path / f"{i}.jpg",
                       "--wrist-image", tmp_path / f"{i}_wrist.jpg",   # every camera, as trained
                       "--instruction", row["instruction"], "--json") == 0
        got = json.loads(capsys.readouterr().out)
        assert got["action_bins"] == [row["action_bins"]], got["text"]
        a = ds_stats["action"]
        assert np.allclose(got["actions"], decode(np.array([row["action_bins"]]), a["q01"],
                                                  a["q99"], a["mask"]))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


@pytest.mark.slow
def test_resume_is_exact(built, tiny, tmp_path):
    common = ["--data", built, "--model", tiny, *SMALL, "--micro-batch", "1", "--accum", "2",
              "--workers", "1", "--lr", "1e-3", "--warmup", "2", "--log-every", "1",
              "--eval-every", "100", "--eval-batches", "1", "--block", "1"]
    assert armdata("train", *common, "--out", tmp_path / "a", "--max-steps", "4") == 0
    assert armdata("train", *common, "--out", tmp_path / "b", "--max-steps", "4",
                   "--save-every", "2", "--stop-after", "2") == 0
    assert armdata("train", *common, "--out", tmp_path / "b", "--max-steps", "4", "--resume") == 0
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    wa, wb = weights(tmp_path / "a" / "model"), weights(tmp_path / "b" / "model")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/loss" in e and "eval/action_accuracy" in e for e in lines)


@pytest.mark.slow
def test_ddp_two_processes_equal_one(built, tiny, tmp_path):
    """2 ranks × 1 worker × micro-batch 1 against 1 rank × 2 workers × 2 accumulated micro-batches:
    the same streams, the same global batch."""
    common = ["--data", str(built), "--model", str(tiny), *SMALL, "--micro-batch", "1",
              "--lr", "1e-3", "--warmup", "1", "--log-every", "1", "--max-steps", "3",
              "--eval-every", "100", "--holdout-shards", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                    "-m", "armdata.trainer.train", *common, "--workers", "1", "--out", str(tmp_path / "ddp")],
                   check=True, env=env, cwd=REPO, timeout=900)
    assert armdata("train", *common, "--workers", "2", "--accum", "2", "--out", tmp_path / "one") == 0
    assert np.allclose(losses(tmp_path / "ddp"), losses(tmp_path / "one"), rtol=1e-5)
    wa, wb = weights(tmp_path / "ddp" / "model"), weights(tmp_path / "one" / "model")
    # All-reduce sums gradients in another order than accumulation does, and Adam's normalisation
    # lifts that float32 rounding on rarely-updated embedding rows to ~4e-6 (measured); one step
    # of lr 1e-3 moves a weight up to 1e-3, so 1e-5 still catches any real difference.
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_lora_resumes_and_saves_a_merged_model(built, tiny, tmp_path):
    common = ["--data", built, "--model", tiny, *SMALL, "--micro-batch", "1", "--workers", "0",
              "--lora", "4", "--lr", "1e-2", "--warmup", "1", "--max-steps", "2",
              "--eval-every", "100", "--holdout-shards", "0", "--out", tmp_path / "run"]
    assert armdata("train", *common, "--stop-after", "1") == 0
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000001" / "model"
    assert (ckpt / "adapter_config.json").exists() and not (tmp_path / "run" / "model").exists()
    assert armdata("train", *common, "--resume") == 0
    merged, base = weights(tmp_path / "run" / "model"), weights(tiny)
    assert not any("lora" in k for k in merged)
    q = next(k for k in base if k.endswith("self_attn.q_proj.weight"))
    norm = next(k for k in base if k.endswith("layernorm.weight") or k.endswith("norm.weight"))
    assert not torch.equal(merged[q], base[q]) and torch.equal(merged[norm], base[norm])


# --- issue 17, trainer and model loading: --out, --resume and weights-only training state ------

RUN = ["--model", None, *SMALL, "--micro-batch", "1", "--workers", "0", "--lr", "1e-3",
       "--warmup", "1", "--max-steps", "2", "--save-every", "1", "--eval-every", "100",
       "--holdout-shards", "0", "--log-every", "1"]


def run_args(built: Path, tiny: Path, out: Path, *extra) -> list:
    return ["train", "--data", built, *[tiny if a is None else a for a in RUN], "--out", out, *extra]


@pytest.fixture(scope="module")
def two_checkpoints(built, tiny, tmp_path_factory) -> Path:
    """A finished 2-step run with checkpoints after steps 1 and 2."""
    out = tmp_path_factory.mktemp("safety_run") / "run"
    assert armdata(*run_args(built, tiny, out)) == 0
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_00000001",
                                                                         "step_00000002"]
    return out


class RunsCode:
    """Unpickling this calls os.system: what a crafted state.pt can do under weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def error_line(capsys) -> str:
    """The command's one error line; anything else on stderr may only be warning log records
    (the trainer's log reaches the terminal, e.g. which checkpoint --resume skipped and why)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("armdata ")]
    assert len(errors) == 1 and all(" WARNING " in line for line in err if line not in errors), err
    return errors[0]


def test_crafted_training_state_never_runs(two_checkpoints, built, tiny, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(two_checkpoints, out)
    shutil.rmtree(out / "checkpoints" / "step_00000001")
    ckpt = out / "checkpoints" / "step_00000002"
    marker = tmp_path / "pwned"
    torch.save({"step": 2, "optimizer": RunsCode(marker)}, ckpt / "state.pt")
    # The attacker also rewrites the checksums (where listed): weights-only loading must refuse.
    listing = ckpt / "checkpoint.json"
    if listing.exists():
        meta = json.loads(listing.read_text())
        meta["files"]["state.pt"] = {"size": (ckpt / "state.pt").stat().st_size, "sha256":
                                     hashlib.sha256((ckpt / "state.pt").read_bytes()).hexdigest()}
        listing.write_text(json.dumps(meta))
    capsys.readouterr()
    try:
        code = armdata(*run_args(built, tiny, out, "--resume"))
    finally:
        assert not marker.exists(), "unpickling the training state ran code"
    assert code == 2
    line = error_line(capsys)
    assert line.startswith("armdata train: error: --resume: no usable checkpoint")
    assert "weights-only loading refuses" in line and "posix.system" in line


def test_resume_falls_back_past_a_truncated_checkpoint(two_checkpoints, built, tiny, tmp_path,
                                                       caplog):
    out = tmp_path / "run"
    shutil.copytree(two_checkpoints, out)
    for name in ("state.pt", "model/model.safetensors"):
        cut = out / "checkpoints" / "step_00000002" / name
        cut.write_bytes(cut.read_bytes()[:100])
    shutil.rmtree(out / "model")
    with caplog.at_level("INFO", logger="armdata.trainer"):
        assert armdata(*run_args(built, tiny, out, "--resume")) == 0
    assert "skipping step_00000002" in caplog.text and "truncated" in caplog.text
    assert "resumed from" in caplog.text and "step_00000001 at step 1" in caplog.text
    # Step 2 trained again from step 1: the same weights as the uninterrupted run's.
    wa, wb = weights(two_checkpoints / "model"), weights(out / "model")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_another_runs_checkpoint(two_checkpoints, built, tiny, capsys):
    before = sorted(p.name for p in two_checkpoints.rglob("*"))
    capsys.readouterr()
    assert armdata(*run_args(built, tiny, two_checkpoints, "--resume", "--lr", "2e-3",
                             "--seed", "1")) == 2
    line = error_line(capsys)
    assert "belongs to another run" in line and "--lr 0.001 there, 0.002 here" in line
    assert "--seed 0 there, 1 here" in line
    assert sorted(p.name for p in two_checkpoints.rglob("*")) == before


def test_fresh_run_into_a_used_out_is_refused(two_checkpoints, built, tiny, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(two_checkpoints, out)
    capsys.readouterr()
    assert armdata(*run_args(built, tiny, out)) == 2
    assert "is not empty" in error_line(capsys) and (out / "checkpoints").exists()
    (out / "notes.txt").write_text("mine")
    assert armdata(*run_args(built, tiny, out, "--overwrite")) == 2
    line = error_line(capsys)
    assert "notes.txt was not written by armdata train" in line
    assert (out / "checkpoints").exists() and (out / "notes.txt").exists()
    assert armdata(*run_args(built, tiny, out, "--overwrite", "--resume")) == 2
    assert "choose one" in error_line(capsys)


def test_predict_prints_readable_text():
    from armdata.trainer.predict import readable

    lines = readable({"text": "x", "depth_codes": list(range(100)), "traces": [[[1, 2], [3, 4]]],
                      "action_bins": [[1, 2, 3, 4, 5, 6, 7]], "actions": [[0.5] * 7]})
    assert lines == ["depth tokens: 100 (0 1 2 3 4 5 6 7 ... (100 in all))",
                     "trace: [[1, 2], [3, 4]]", "action bins (1 step(s)): 1 2 3 4 5 6 7",
                     "action (de-normalised, first step): " + " ".join(["0.500"] * 7)]
    empty = readable({"text": "", "depth_codes": [], "traces": [], "action_bins": [[1, None]]})
    assert empty[-1] == "action (de-normalised): none (no complete step of bins)"
    assert all("\\n" not in line and "{" not in line for line in lines)
