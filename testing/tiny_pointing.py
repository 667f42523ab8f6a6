"""A tiny random-weight LLaVA (transformers) with a word-level tokenizer: the real batched
generate path of the pointing localizer at a realistic per-frame call pattern, without downloads."""
from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, \
    LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast

WORDS = (["<pad>", "<s>", "</s>", "<unk>", "<image>", "[", "]", ",", "."]
         + [str(i) for i in range(256)] + "point to the robot gripper left right".split())


def tiny_pointing_model(hidden: int = 32, layers: int = 2, image_size: int = 56,
                        seed: int = 0) -> tuple[Any, Any]:
    """(model, processor) with random weights; answers are arbitrary words and numbers."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>",
                                        extra_special_tokens={"image_token": "<image>"})
    tokenizer.padding_side = "left"
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden,
                                       num_hidden_layers=layers, num_attention_heads=2,
                                       image_size=image_size, patch_size=14),
        text_config=LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden,
                                num_hidden_layers=layers, num_attention_heads=2,
                                num_key_value_heads=2, vocab_size=len(WORDS), pad_token_id=0,
                                bos_token_id=1, eos_token_id=2),
        image_token_index=WORDS.index("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(config).eval(), processor
