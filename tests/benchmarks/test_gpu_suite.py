"""benchmarks/gpu_suite.py: the CPU smoke run (every part end to end with tiny models) writes the
JSON and the Markdown table with figures from every part; the cost rows; the published sizes of
the real-size builders (parameter counts on the meta device, nothing allocated)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from unittest import mock

import pytest
import torch

from benchmarks import cost_table, gpu_suite, suite_models
from tests.conftest import REPO


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[int, dict, str]:
    out = tmp_path_factory.mktemp("suite")
    code = gpu_suite.main(["--device", "cpu", "--tiny", "--out", str(out)])
    return (code, json.loads((out / "gpu_suite.json").read_text()),
            (out / "gpu_suite.md").read_text())


def positive(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.mark.e2e   # every part end to end with tiny models: 40-50 s
def test_smoke_every_part_reports_figures(smoke):
    code, report, md = smoke
    parts = report["parts"]
    assert code == 0 and list(parts) == list(gpu_suite.PARTS)
    assert {p["status"] for p in parts.values()} == {"ok", "skipped"}
    assert parts["cotracker"]["status"] == "skipped"   # no CoTracker3 code offline
    depth = parts["depth"]["tiny"]
    for key in ("fp32_batch1", "fp32_batch2", "bf16_batch1", "bf16_batch2"):
        assert positive(depth[key]["per_s"]) and positive(depth[key]["peak_mib"])
    assert 0.0 <= depth["codes_equal_bf16_fp32"] <= 1.0
    for key in ("caption_batch1", "caption_batch2", "plan_batch1", "plan_batch2"):
        assert positive(parts["captioner"][key]["episodes_per_s"])
        assert parts["captioner"][key]["calls"] >= 1
    assert positive(parts["detector"]["batch1"]["per_s"])
    e2e = parts["end_to_end"]
    assert e2e["episodes"] == 2 and positive(e2e["episodes_per_hour"])
    assert set(e2e["seconds_by_stage"]) == {"actions (start-up, read, write)", "reasoning"}
    for mode in ("lora", "full"):
        t = parts["trainer"][mode]
        assert positive(t["samples_per_s"]) and positive(t["tokens_per_s"])
        assert positive(t["model_tflops_per_s"]) and t["mfu"] is None   # no CPU peak
    assert parts["trainer"]["lora"]["trainable_parameters"] \
        < parts["trainer"]["full"]["trainable_parameters"]
    assert "| depth | tiny bf16_batch2 |" in md and "episodes/h" in md
    assert md.count(cost_table.NOT_MEASURED) == 2 * len(cost_table.DATASETS)   # CPU: no cost


def test_failing_part_is_recorded_and_the_others_run(tmp_path):
    def boom(ctx):
        raise MemoryError("CUDA out of memory (simulated)")
    with mock.patch.dict(gpu_suite.PART_FUNCTIONS, {"detector": boom}):
        code = gpu_suite.main(["--device", "cpu", "--tiny", "--out", str(tmp_path),
                               "--parts", "detector,cotracker,trainer"])
    parts = json.loads((tmp_path / "gpu_suite.json").read_text())["parts"]
    assert code == 1
    assert parts["detector"]["status"] == "failed" and "out of memory" in parts["detector"]["error"]
    assert parts["cotracker"]["status"] == "skipped"
    assert "end_to_end" in parts["trainer"]["error"]   # its rows were never built
    assert "| detector | failed: MemoryError" in (tmp_path / "gpu_suite.md").read_text()


def test_runs_as_a_module_from_the_repository_root(tmp_path):
    """The README's command: `python -m benchmarks.gpu_suite` imports its sibling benchmarks as
    `benchmarks.*` without touching sys.path (a part that needs nothing: the skipped CoTracker3)."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", "--device", "cpu",
                           "--tiny", "--parts", "cotracker", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert report["parts"]["cotracker"]["status"] == "skipped"
    assert report["meta"]["command"].startswith("python -m benchmarks.gpu_suite --device cpu")


def test_time_limit_stops_a_part():
    with pytest.raises(gpu_suite.PartTimeout):
        with gpu_suite.time_limit(1):
            while True:
                pass


def test_cost_rows():
    assert cost_table.gpu_hours(3_600_000, 100.0) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        cost_table.gpu_hours(1, 0.0)
    rows = cost_table.cost_rows({"steps_per_s": 50.0, "device_type": "cuda"}, 2.0)
    fractal = rows[0]
    assert fractal["dataset"] == "fractal20220817_data"
    assert fractal["gpu_hours"] == pytest.approx(3_786_400 / 50 / 3600)
    assert fractal["usd"] == pytest.approx(fractal["gpu_hours"] * 2.0)
    # a CPU figure or no figure fills nothing
    for e2e in (None, {"steps_per_s": 50.0, "device_type": "cpu"}):
        assert all(r["gpu_hours"] is None for r in cost_table.cost_rows(e2e, 2.0))
    md = cost_table.markdown(rows, 2.0, "NVIDIA H100")
    assert f"| fractal20220817_data | 87,212 | 3,786,400 | {fractal['gpu_hours']:,.1f} |" in md


def meta_parameters(build) -> int:
    with torch.device("meta"):
        return suite_models.parameters(build())


def test_published_sizes():
    from transformers import CLIPVisionConfig, CLIPVisionModel, GroundingDinoForObjectDetection, \
        Qwen2Config, Qwen2Model

    from armdata.models.depth_anything import ARCHITECTURES, depth_anything_config, random_depth_model

    def depth(arch):
        return meta_parameters(lambda: random_depth_model(depth_anything_config(
            **ARCHITECTURES[arch])))
    # Depth Anything V2 model cards: 24.8 M, 97.5 M, 335.3 M
    assert depth("small") == pytest.approx(24.8e6, rel=0.02)
    assert depth("base") == pytest.approx(97.5e6, rel=0.02)
    assert depth("large") == pytest.approx(335.3e6, rel=0.02)
    # Qwen3-VL-2B's decoder (1.7 B with its 151,936-row tied embedding) and vision tower (~0.4 B)
    lm = meta_parameters(lambda: Qwen2Model(Qwen2Config(vocab_size=151_936,
                                                        **suite_models.QWEN3_VL_2B_TEXT)))
    assert lm == pytest.approx(1.72e9, rel=0.03)
    vit = meta_parameters(lambda: CLIPVisionModel(CLIPVisionConfig(
        image_size=suite_models.VISION_PX, patch_size=14, **suite_models.QWEN3_VL_2B_VISION)))
    assert 0.28e9 < vit < 0.45e9
    # Qwen2-VL-2B: 1.5 B decoder + 0.67 B vision tower
    lm2 = meta_parameters(lambda: Qwen2Model(Qwen2Config(vocab_size=151_936,
                                                         **suite_models.QWEN2_VL_2B_TEXT)))
    assert lm2 == pytest.approx(1.54e9, rel=0.03)
    vit2 = meta_parameters(lambda: CLIPVisionModel(CLIPVisionConfig(
        image_size=suite_models.VISION_PX, patch_size=14, **suite_models.QWEN2_VL_2B_VISION)))
    assert vit2 == pytest.approx(0.63e9, rel=0.05)
    # grounding-dino-base: 233 M
    dino = meta_parameters(lambda: GroundingDinoForObjectDetection(
        suite_models.grounding_dino_base_config()))
    assert dino == pytest.approx(233e6, rel=0.03)


def test_answer_tokens_read_the_vocabulary_once(tmp_path):
    """get_vocab copies the whole vocabulary (0.3 s for Qwen2's): once per token was 35 s per
    model load."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from armdata.testing.tiny_reasoning import save_tiny_text_llm
    from armdata.trainer.tokens import add_answer_tokens

    path = save_tiny_text_llm(tmp_path / "llm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, vocab_size=len(tokenizer)))
    with mock.patch.object(type(tokenizer), "get_vocab", autospec=True,
                           side_effect=type(tokenizer).get_vocab) as spy:
        add_answer_tokens(tokenizer, model)
    assert spy.call_count <= 2   # add_answer_tokens once, token_tables at most once
