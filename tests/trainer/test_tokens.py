"""Tokenizers built from `tokenizers` objects (the real Qwen2 vocabulary offline, the tiny models'
vocabularies) give what LLaMA/Qwen2 tokenizers give: input_ids and attention_mask only. Before
transformers 5 they also gave token_type_ids, which these models' generate() refuses."""
from __future__ import annotations

from pathlib import Path

import pytest

from armdata.testing.tiny_vlm import bytes_tokenizer, words_tokenizer
from armdata.trainer.tokens import qwen2_tokenizer


@pytest.mark.parametrize("make", [qwen2_tokenizer, words_tokenizer, bytes_tokenizer])
def test_tokenizers_return_decoder_inputs(make, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = make()
    assert set(tok("point to the robot gripper .")) == {"input_ids", "attention_mask"}
    tok.save_pretrained(tmp_path)   # as the demo's model directory keeps it
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert set(again(["point to", "the robot"], padding=True)) == {"input_ids", "attention_mask"}
