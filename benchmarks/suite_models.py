"""Random-weight model directories for `benchmarks/gpu_suite.py`, saved the way the build loads
them (`save_pretrained` directories, a VQ-VAE checkpoint): `tiny` sizes (the tests' builders) for
the CPU smoke run, `real` sizes (published architectures' dimensions) for the GPU run.

The chat models are LLaVA-layout (CLIP vision tower + Qwen2 decoder, `armdata.testing.tiny_vlm`) at the
published models' dimensions, not Qwen3-VL/Qwen2-VL themselves: their processors cannot be built
offline here (Qwen3-VL's needs torchvision's video processor). Per generated token the decoder
cost is the same; the vision towers see 224 px (256 patches, like Qwen3-VL's 16-px patches on a
256-px frame), and all 256 patches reach the decoder (Qwen's 2×2 merge would pass 64): prefill
is overestimated, never flattered.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch

# Qwen3-VL-2B-Instruct (config.json): decoder 2048 wide, 28 layers, 16 heads (8 KV), MLP 6144,
# tied embeddings; vision 1024 wide, 24 layers, 16 heads, MLP 4096.
QWEN3_VL_2B_TEXT = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                        num_attention_heads=16, num_key_value_heads=8, tie_word_embeddings=True,
                        max_position_embeddings=32768)
QWEN3_VL_2B_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                          num_attention_heads=16)
# Qwen2-VL-2B-Instruct: decoder 1536 wide, 28 layers, 12 heads (2 KV), MLP 8960, tied embeddings;
# vision 1280 wide, 32 layers, 16 heads, MLP 5120.
QWEN2_VL_2B_TEXT = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                        num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True,
                        max_position_embeddings=32768)
QWEN2_VL_2B_VISION = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                          num_attention_heads=16)
VISION_PX = 224


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build (and so save) real-size models in bf16: half the disk and load time."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def fixed_length(path: Path, new_tokens: int) -> Path:
    """Make every generate() of the saved model produce exactly `new_tokens` (EOS ignored)."""
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(path)
    config.min_new_tokens = new_tokens
    config.save_pretrained(path)
    return path


def chat_vlm(path: Path, tiny: bool, new_tokens: int) -> Path:
    """Captioner: the tests' word-level LLaVA, or Qwen3-VL-2B's dimensions."""
    if tiny:
        from armdata.testing.tiny_reasoning import save_tiny_chat_vlm
        return fixed_length(save_tiny_chat_vlm(path), new_tokens)
    from armdata.testing.tiny_vlm import save_tiny_vlm
    with default_dtype(torch.bfloat16):
        return fixed_length(save_tiny_vlm(path, image_size=VISION_PX, vision=QWEN3_VL_2B_VISION,
                                          text=QWEN3_VL_2B_TEXT), new_tokens)


def text_llm(path: Path, tiny: bool, new_tokens: int) -> Path:
    """Planner (text only): the tests' tiny Llama, or Qwen3-VL-2B's decoder with the Qwen2
    tokenizer and the ChatML template."""
    if tiny:
        from armdata.testing.tiny_reasoning import save_tiny_text_llm
        return fixed_length(save_tiny_text_llm(path), new_tokens)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from armdata.testing.tiny_vlm import CHAT_TEMPLATE
    from armdata.trainer.tokens import qwen2_tokenizer

    tokenizer = qwen2_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    with default_dtype(torch.bfloat16):
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer),
                                             pad_token_id=tokenizer.pad_token_id,
                                             eos_token_id=tokenizer.eos_token_id,
                                             **QWEN3_VL_2B_TEXT))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return fixed_length(path, new_tokens)


def trainer_vlm(path: Path, tiny: bool) -> Path:
    """The model `armdata train` fine-tunes: Qwen2-VL-2B's dimensions, or (smoke run) the tests'
    trainer model, armdata.testing.tiny_vlm's with the byte-level vocabulary (the real Qwen2
    vocabulary's 151k-row softmax would be most of a CPU step)."""
    from armdata.testing.tiny_vlm import save_tiny_vlm
    if tiny:
        return save_tiny_vlm(path, vocab="bytes")
    with default_dtype(torch.bfloat16):
        return save_tiny_vlm(path, image_size=VISION_PX, vision=QWEN2_VL_2B_VISION,
                             text=QWEN2_VL_2B_TEXT)


def grounding_dino_base_config() -> Any:
    """IDEA-Research/grounding-dino-base: Swin-B (128 wide, depths 2-2-18-2, window 12, 384 px)
    and BERT-base text encoder; transformers' defaults are the rest of that checkpoint's config
    (256-wide, 6+6 layers, 900 queries, 4 feature levels)."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    return GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                                   window_size=12, image_size=384,
                                   out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig())


def detector(path: Path, tiny: bool) -> Path:
    """Grounding DINO: the tests' tiny one, or the base checkpoint's size with the tests' small
    word-piece vocabulary (a phrase's cost is its length, not the vocabulary) and the published
    processor's 800/1333 resize."""
    from armdata.testing.tiny_reasoning import save_tiny_detector
    path = save_tiny_detector(path)
    if tiny:
        return path
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

    processor = GroundingDinoProcessor.from_pretrained(path)
    processor.image_processor.size = {"shortest_edge": 800, "longest_edge": 1333}
    torch.manual_seed(0)
    with default_dtype(torch.bfloat16):
        model = GroundingDinoForObjectDetection(grounding_dino_base_config()).eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def depth_model(path: Path, arch: str) -> Path:
    """Depth Anything V2 at a published size (`small`, `base`, `large`) or `tiny`."""
    from armdata.models.depth_anything import ARCHITECTURES, depth_anything_config, random_depth_model
    from armdata.testing.tiny_models import TINY_DEPTH

    sizes = TINY_DEPTH if arch == "tiny" else ARCHITECTURES[arch]
    random_depth_model(depth_anything_config(**sizes)).save_pretrained(path)
    return path


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
