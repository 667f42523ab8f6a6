"""Tiny random-weight vision-language models for tests, benchmarks and the offline demo: LLaVA's
architecture (CLIP vision tower + a decoder), whose processor needs no torchvision, with one of
three vocabularies:

- `words`: a word-level vocabulary of pointing prompts and numbers, Llama decoder (the pointing
  localizer and the reasoning stage: their real batched generate path, no downloads);
- `bytes`: byte-level BPE without merges (any text, 260 ids), Qwen2 decoder: the trainer's
  mechanics without the 151k-row softmax that dominates a CPU step;
- `qwen2`: the real Qwen2 tokenizer built offline (actions as Qwen2 ids, SPEC §4): the demo and
  the one real-vocabulary trainer test.

Real runs use a pretrained model (`armdata.trainer.train.DEFAULT_MODEL`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

IMAGE_TOKEN = "<image>"
WORDS = (["<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN, "[", "]", ",", "."]
         + [str(i) for i in range(256)] + "point to the robot gripper left right".split())
VOCABULARIES = ("words", "bytes", "qwen2")
# ChatML as Qwen2 writes it; images are LLaVA's <image> placeholder.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def words_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers

    from armdata.trainer.tokens import decoder_tokenizer

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    return decoder_tokenizer(tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                             unk_token="<unk>", extra_special_tokens={"image_token": IMAGE_TOKEN})


def bytes_tokenizer() -> Any:
    """Byte-level BPE with no merges (one id per byte, so any text round-trips) and Qwen2's chat
    special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from armdata.trainer.tokens import QWEN2_SPECIALS, decoder_tokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = decoder_tokenizer(tok)
    tokenizer.add_tokens(QWEN2_SPECIALS, special_tokens=True)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    return tokenizer


def tiny_vlm(vocab: str = "bytes", hidden: int = 64, layers: int = 2, image_size: int = 56,
             seed: int = 0, vision: dict | None = None,
             text_overrides: dict | None = None) -> tuple[Any, Any]:
    """(model, processor) with random weights; answers are arbitrary tokens. `vision` and
    `text_overrides` override config fields (benchmarks build published sizes this way)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, \
        LlavaForConditionalGeneration, LlavaProcessor, Qwen2Config

    from armdata.trainer.tokens import qwen2_tokenizer

    if vocab not in VOCABULARIES:
        raise ValueError(f"vocab must be one of {VOCABULARIES}, got {vocab!r}")
    heads = 2 if vocab == "words" else 4
    if vocab == "words":
        tokenizer = words_tokenizer()
        text = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden,
                           num_hidden_layers=layers, num_attention_heads=heads,
                           num_key_value_heads=2, vocab_size=len(WORDS), pad_token_id=0,
                           bos_token_id=1, eos_token_id=2)
    else:
        tokenizer = bytes_tokenizer() if vocab == "bytes" else qwen2_tokenizer()
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
        text = Qwen2Config(**{
            "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": 2, "vocab_size": len(tokenizer),
            "max_position_embeddings": 2048, "tie_word_embeddings": False,
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            **(text_overrides or {})})
    tokenizer.padding_side = "left"
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default",
                               num_additional_image_tokens=1,
                               chat_template=None if vocab == "words" else CHAT_TEMPLATE)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**{
            "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "image_size": image_size, "patch_size": 14,
            **(vision or {})}),
        text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    if vocab != "words":
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor


def save_tiny_vlm(out: str | Path, vocab: str = "qwen2", hidden: int = 64, layers: int = 2,
                  image_size: int = 56, seed: int = 0, vision: dict | None = None,
                  text: dict | None = None) -> Path:
    """Write `tiny_vlm(...)`'s model and processor to `out` (loaded as a Hub model would be)."""
    model, processor = tiny_vlm(vocab, hidden, layers, image_size, seed, vision, text)
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
