"""A tiny random-weight vision-language model with the real Qwen2 tokenizer, for tests and the
offline demo: LLaVA's architecture (CLIP vision tower + Qwen2 decoder), whose processor needs no
torchvision. Real runs use a pretrained model (`armdata.trainer.train.DEFAULT_MODEL`)."""
from __future__ import annotations

from pathlib import Path

import torch

from armdata.trainer.tokens import qwen2_tokenizer

IMAGE_TOKEN = "<image>"
# ChatML as Qwen2 writes it; images are LLaVA's <image> placeholder.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def save_tiny_vlm(out: str | Path, hidden: int = 64, layers: int = 2, image_size: int = 56,
                  seed: int = 0, vision: dict | None = None, text: dict | None = None) -> Path:
    """Write a random-weight LLaVA(CLIP, Qwen2) model and its processor to `out`; `vision` and
    `text` override config fields (benchmarks build published sizes this way)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, \
        LlavaForConditionalGeneration, LlavaProcessor, Qwen2Config

    tokenizer = qwen2_tokenizer()
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tokenizer.padding_side = "left"
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)
    text_config = Qwen2Config(**{
        "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": len(tokenizer),
        "max_position_embeddings": 2048, "tie_word_embeddings": False,
        "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
        **(text or {})})
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**{
            "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": 4, "image_size": image_size, "patch_size": 14,
            **(vision or {})}),
        text_config=text_config, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        tie_word_embeddings=text_config.tie_word_embeddings)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
