"""Tiny random-weight models for the reasoning stage, saved as model directories so that the stage
loads them exactly as it loads a Hub model: a chat LLaVA (captioner and text-only planner) and a
Grounding DINO detector with a BERT word-piece vocabulary. Both processors work without
torchvision."""
from __future__ import annotations

from pathlib import Path

import torch

from armdata.testing.tiny_vlm import tiny_vlm

# Role names, the image and the text of each part, in a plain template the word-level tokenizer
# of the tiny model can read.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : "
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} . {% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}")


def save_tiny_chat_vlm(path: Path, seed: int = 0) -> Path:
    model, processor = tiny_vlm("words", hidden=32, seed=seed)
    processor.chat_template = CHAT_TEMPLATE
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


DETECTOR_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "the", "a", "robot",
                  "cup", "sink", "pot", "table", "towel", "on", "in", "left", "right", "of",
                  "is", "and", "gripper", "counter", "rack", "drying", "spoon", "carrot"]


def save_tiny_detector(path: Path, seed: int = 0) -> Path:
    from transformers import BertConfig, BertTokenizer, GroundingDinoConfig, \
        GroundingDinoForObjectDetection, GroundingDinoProcessor, SwinConfig
    try:   # the PIL processor (no torchvision); before transformers 5.x's split, the default one
        from transformers.models.grounding_dino.image_processing_pil_grounding_dino import \
            GroundingDinoImageProcessorPil
    except ImportError:
        from transformers import GroundingDinoImageProcessor as GroundingDinoImageProcessorPil

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(DETECTOR_WORDS) + "\n")
    tokenizer = BertTokenizer(str(vocab))
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=4,
                                   image_size=64, out_features=["stage1", "stage2"]),
        text_config=BertConfig(vocab_size=len(DETECTOR_WORDS), hidden_size=16,
                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=20,
        num_feature_levels=2, encoder_n_points=2, decoder_n_points=2, max_text_len=32)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 64})
    processor = GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def save_tiny_text_llm(path: Path, seed: int = 0) -> Path:
    """A text-only Llama planner with the word-level tokenizer and the plain chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM

    from armdata.testing.tiny_vlm import WORDS
    from armdata.trainer.tokens import decoder_tokenizer

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = decoder_tokenizer(tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=len(WORDS), pad_token_id=0, bos_token_id=1,
        eos_token_id=2))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
