"""The trainer's sample forms beyond the golden strings: tokenization (text form = the answer string
tokenized whole; ids form = one id per bin) on the real Qwen2 vocabulary, `predict`'s parser on
every form and variant the sample builder writes, bimanual rows, eval's action error in both action
formats, the loader feeding what `armdata samples` prints, skipped rows, and the sample format in
the run identity (`--resume`, `predict`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from armdata.testing.tiny_vlm import save_tiny_vlm, tiny_vlm
from armdata.trainer.checkpoint import differences
from armdata.trainer.data import StreamingLoader, open_source
from armdata.trainer.metrics import EvalSums, add_batch
from armdata.trainer.predict import answer_text, parse_answer
from armdata.trainer.sample_form import (ACTION, SampleOptions, SkippedRow, build_sample,
                                         draw_trace, read_image)
from armdata.trainer.samples import IGNORE, Formatter
from armdata.trainer.tokens import add_answer_tokens
from armdata.transforms.actions import VOCAB_SIZE, decode
from tests.conftest import armdata
from tests.trainer.test_samples_golden import STATS, STEPS, write_golden

FORMS = [("finetune", "text"), ("finetune", "ids"), ("pretrain", "text"), ("pretrain", "ids")]


def rows_of(out: Path) -> list[dict]:
    return pq.read_table(out / "data" / "train-00000-of-00001.parquet").to_pylist()


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return write_golden(tmp_path_factory.mktemp("golden") / "out")


@pytest.fixture(scope="module")
def qwen2():
    model, processor = tiny_vlm("qwen2")
    return processor, add_answer_tokens(processor.tokenizer, model)


@pytest.fixture(scope="module")
def byte_level():
    model, processor = tiny_vlm("bytes")
    return processor, add_answer_tokens(processor.tokenizer, model)


def answer_of(sample: dict) -> list[int]:
    return sample["labels"][sample["labels"] != IGNORE].tolist()


@pytest.mark.parametrize("form, fmt", FORMS)
def test_tokenized_answer_round_trips_on_qwen2(output, qwen2, form, fmt):
    processor, tables = qwen2
    tok = processor.tokenizer
    row = rows_of(output)[0]
    options = SampleOptions(sample_form=form, action_format=fmt, drawn_trace=0.0)
    sample = Formatter(processor, tables, options)(row, np.random.default_rng(0), {})
    text = build_sample(row, options, np.random.default_rng(0)).answer_text
    ids = answer_of(sample)
    assert ids[-1] == tok.eos_token_id
    if fmt == "text":   # MolmoAct's answer string, tokenized as one string
        assert ids[:-1] == tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids[:-1]) == text
    else:               # one Qwen2 id per bin (SPEC §4)
        actions = [i for i in ids if VOCAB_SIZE - 256 <= i < VOCAB_SIZE]
        assert actions == [VOCAB_SIZE - b for step in row["action_chunk_bins"] for b in step]
    assert answer_text(ids[:-1], tok, tables) == text
    parsed = parse_answer(text)
    assert parsed["depth_codes"] == list(row["depth_codes"])
    assert parsed["action_bins"] == row["action_chunk_bins"]
    arms = ["left", "right"] if form == "finetune" else [None]
    assert parsed["trace_arms"] == arms and parsed["traces"] == [row["trace"]] * len(arms)


@pytest.mark.parametrize("parts, variant", [(("depth", "trace"), "reasoning"),
                                            (("depth",), "depth_only"),
                                            (("trace",), "trace_only"), ((), "action_only")])
@pytest.mark.parametrize("form", ["finetune", "pretrain"])
def test_predict_parses_every_variant(output, parts, variant, form):
    row = rows_of(output)[2]
    for drawn, chunk in ((0.0, True), (0.0, False), (1.0, True)):
        options = SampleOptions(sample_form=form, parts=parts, drawn_trace=drawn, chunk=chunk)
        sample = build_sample(row, options, np.random.default_rng(0))
        parsed = parse_answer(sample.answer_text)
        assert sample.variant == ("drawn" if drawn else variant)
        bins = row["action_chunk_bins"] if chunk else [row["action_bins"]]
        assert parsed["action_bins"] == bins
        shown = not drawn and "trace" in parts
        assert parsed["traces"] == ([row["trace"]] * (2 if form == "finetune" else 1) if shown
                                    else [])
        assert parsed["depth_codes"] == (list(row["depth_codes"])
                                         if not drawn and "depth" in parts else [])


def bimanual(row: dict, arms: list[dict]) -> dict:
    return {**row, "arm_traces": json.dumps(arms)}


def test_bimanual_rows(output):
    row = rows_of(output)[0]
    left, right = [[1, 2], [30, 40]], [[200, 10], [100, 100], [5, 250]]
    fine = SampleOptions(drawn_trace=0.0)

    def traces(r: dict, options: SampleOptions = fine) -> tuple[list, list]:
        parsed = parse_answer(build_sample(r, options, np.random.default_rng(0)).answer_text)
        return parsed["trace_arms"], parsed["traces"]

    named = [{"arm": "right", "trace": right}, {"arm": "left", "trace": left}]
    assert traces(bimanual(row, named)) == (["left", "right"], [left, right])
    unnamed = [{"arm": "a", "trace": left}, {"arm": "b", "trace": right}]
    assert traces(bimanual(row, unnamed)) == (["left", "right"], [left, right])
    assert traces(bimanual(row, unnamed), SampleOptions(sample_form="pretrain", drawn_trace=0.0)) \
        == ([None], [row["trace"]])
    with pytest.raises(SkippedRow) as err:
        build_sample(bimanual(row, [{"arm": "left", "trace": left},
                                    {"arm": "right", "trace": None}]), fine,
                     np.random.default_rng(0))
    assert err.value.reason == "skipped_no_trace"
    drawn = build_sample(bimanual(row, named), SampleOptions(drawn_trace=1.0),
                         np.random.default_rng(0))
    main = read_image(row["image"])
    assert drawn.images[0].tobytes() == draw_trace(draw_trace(main, left), right).tobytes()


@pytest.mark.parametrize("fmt", ["text", "ids"])
def test_eval_action_l1_reads_both_action_formats(output, byte_level, fmt):
    processor, tables = byte_level
    row = rows_of(output)[3]
    options = SampleOptions(action_format=fmt, drawn_trace=0.0)
    sample = Formatter(processor, tables, options)(row, np.random.default_rng(0), {})
    target = torch.tensor(answer_of(sample))
    kinds = sample["kinds"][sample["labels"] != IGNORE]
    stats = {row["dataset"]: {"action": STATS}}
    spans = sample["meta"]["action_spans"]
    assert len(spans) == 7 and all(kinds[t] == ACTION for span in spans for t in span)
    expected = np.abs(decode(np.array(row["action_bins"]), STATS["q01"], STATS["q99"],
                             STATS["mask"]) - np.array(row["action"])).mean()

    def l1(pred: torch.Tensor) -> float:
        sums = EvalSums()
        add_batch(sums, 0.0, pred, target, kinds, torch.zeros_like(target), [sample["meta"]],
                  tables, processor.tokenizer, stats)
        return sums.result(dict(sums.sums))["action_l1"]

    assert l1(target) == pytest.approx(expected)          # teacher-forced, all right
    wrong = target.clone()
    wrong[spans[0][0]] = processor.tokenizer.convert_tokens_to_ids("x")   # not a bin: middle
    bins = np.array(row["action_bins"])
    bins[0] = 128
    worse = np.abs(decode(bins, STATS["q01"], STATS["q99"], STATS["mask"])
                   - np.array(row["action"])).mean()
    assert l1(wrong) == pytest.approx(worse) and worse > expected


def loader(out: Path, processor, tables, **kw) -> StreamingLoader:
    options = SampleOptions()
    return StreamingLoader([open_source(str(out))], lambda: Formatter(processor, tables, options),
                           1, rank=0, world=1, seed=3, **kw)


def test_loader_feeds_what_armdata_samples_prints(output, byte_level, tmp_path, capsys):
    processor, tables = byte_level
    capsys.readouterr()
    assert armdata("samples", output, "--n", STEPS, "--json", "--seed", "3") == 0
    printed = {r["step"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    # Epoch 0 of a shuffled training stream (rows in another order, 2 loader streams): each row
    # gets the variant and answer `armdata samples --seed 3` printed.
    ld = loader(output, processor, tables, workers=2, block=1)
    fed = {}
    for g in range(2):
        epoch_rows = sum(u.size for u in ld.split[0][g])
        for sample, draws in ld.samples(g, 0, {}):
            if draws > epoch_rows:   # past epoch 0 of this stream
                break
            fed[sample["meta"]["step"]] = sample
    assert sorted(fed) == sorted(printed)
    for step, sample in fed.items():
        assert sample["meta"]["variant"] == printed[step]["variant"]
        assert processor.tokenizer.decode(answer_of(sample)[:-1]) == printed[step]["answer"]


def copy_output(output: Path, dst: Path, table: pa.Table | None = None,
                manifest: dict | None = None) -> Path:
    """`output`'s dataset in `dst`, its rows replaced by `table`, with `manifest` if given."""
    (dst / "data").mkdir(parents=True)
    shard = "data/train-00000-of-00001.parquet"
    pq.write_table(table if table is not None else pq.read_table(output / shard), dst / shard)
    (dst / "dataset_statistics.json").write_bytes((output / "dataset_statistics.json").read_bytes())
    if manifest is not None:
        (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_skipped_rows_are_counted_and_a_hopeless_stream_is_an_error(output, byte_level,
                                                                    tmp_path):
    processor, tables = byte_level
    counters: dict[str, int] = {}
    ld = loader(output, processor, tables, workers=1, shuffle=False, epochs=1)
    assert len(list(ld.samples(0, 0, counters))) == STEPS - 2
    assert counters == {"samples": STEPS - 2, "skipped_no_depth": 1, "skipped_no_trace": 1,
                        "drawn_trace": counters["drawn_trace"]}
    t = pq.read_table(output / "data" / "train-00000-of-00001.parquet")
    i = t.schema.get_field_index("depth_codes")
    no_depth = t.set_column(i, "depth_codes", pa.nulls(t.num_rows, t.schema.field(i).type))
    ld = loader(copy_output(output, tmp_path / "no_depth", no_depth), processor, tables,
                workers=1)   # training: endless epochs, which would never yield
    with pytest.raises(ValueError, match=f"none of the {STEPS} rows of loader stream 0"):
        next(ld.samples(0, 0, {}))


def test_resume_identity_names_the_sample_form():
    sample = SampleOptions().to_json()
    run = {"data": [], "eval": [], "world": 1, "options": {"seed": 0, **sample}}
    other = {**run, "options": {"seed": 0, **{**sample, "sample_form": "pretrain"}}}
    assert differences(run, other) == ["--sample-form finetune there, pretrain here"]
    old = {**run, "options": {"seed": 0, "action_format": "ids", "wrist": False}}
    assert differences(old, run) == ["sample format 1 there (an older armdata), 2 here"]


def test_samples_refuses_a_build_without_the_stages(output, tmp_path, capsys):
    rows_only = copy_output(output, tmp_path / "actions_only", manifest={"stages": ["actions"]})
    capsys.readouterr()
    assert armdata("samples", rows_only) == 2
    err = capsys.readouterr().err
    assert "built without the depth and trace stage(s)" in err and "--stages" in err
    assert armdata("samples", rows_only, "--parts", "none", "--json") == 0
    assert [json.loads(r)["variant"] for r in capsys.readouterr().out.splitlines()] == \
        ["action_only"] * 3


@pytest.mark.e2e
def test_resume_and_predict_refuse_another_sample_format(output, tmp_path, capsys):
    model = save_tiny_vlm(tmp_path / "tiny", vocab="bytes")
    run = tmp_path / "run"
    common = ["train", "--data", output, "--model", model, "--out", run, "--micro-batch", "1",
              "--workers", "0", "--max-steps", "2", "--save-every", "1", "--eval-every", "100",
              "--holdout-shards", "0", "--warmup", "1"]
    assert armdata(*common, "--stop-after", "1") == 0
    saved = json.loads((run / "checkpoints" / "step_00000001" / "model" /
                        "armdata_trainer.json").read_text())
    assert saved["sample_format_version"] == 2 and saved["sample_form"] == "finetune"
    capsys.readouterr()
    assert armdata(*common, "--resume", "--sample-form", "pretrain") == 2
    assert "--sample-form finetune there, pretrain here" in capsys.readouterr().err
    ckpt_model = run / "checkpoints" / "step_00000001" / "model"
    (ckpt_model / "armdata_trainer.json").write_text(json.dumps({**saved,
                                                                 "sample_format_version": 1}))
    image = tmp_path / "frame.png"
    read_image(rows_of(output)[0]["image"]).save(image)
    assert armdata("predict", "--model", ckpt_model, "--image", image, "--instruction", "x") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("armdata predict: error: ") and "sample format 1" in err[-1]
