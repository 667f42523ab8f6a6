"""A chat VLM from transformers (AutoProcessor + AutoModelForImageTextToText) for the reasoning
stage: scene captions (one image + prompt per episode) and, text only, the per-episode plan.

Generation is batched (left padding), greedy (byte-reproducible) and runs under
`torch.inference_mode()` with bf16 weights on CUDA."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

log = logging.getLogger(__name__)

# Apache-2.0, native in transformers ≥ 4.57 (no remote code).
DEFAULT_CAPTIONER_MODEL = "Qwen/Qwen3-VL-2B-Instruct"


@dataclass
class ChatModel:
    model: Any
    processor: Any
    model_id: str

    @property
    def device(self) -> Any:
        return self.model.device

    def generate(self, conversations: Sequence[list[dict[str, Any]]],
                 images: Sequence[Any] | None, max_new_tokens: int) -> list[str]:
        """One greedy answer per conversation (chat messages with `{"type": "image"}` parts where
        `images` holds one PIL image per conversation), generated as one batch."""
        import torch

        texts = [self.processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                 for c in conversations]
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if images is not None:
            kwargs["images"] = list(images)
        processor = self.processor if images is not None or not hasattr(
            self.processor, "tokenizer") else self.processor.tokenizer
        with torch.inference_mode():
            inputs = processor(**kwargs)
            # pixel values in the weights' dtype (bf16 on CUDA); token ids stay integers
            inputs = inputs.to(self.device, dtype=self.model.dtype) if images is not None \
                else inputs.to(self.device)
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:].cpu()
        return [a.strip() for a in self.processor.batch_decode(new, skip_special_tokens=True)]


def load_chat_model(model_id: str, device: Any, what: str = "captioner") -> ChatModel:
    """Load a Hub id or local directory (a planner may also be a text-only causal LM); a clear
    RuntimeError when it cannot be loaded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(model_id)
        try:
            model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=dtype)
        except ValueError:
            if what != "planner":
                raise
            # a text-only LLM as planner (its "processor" is its tokenizer)
            model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype)
    except Exception as exc:
        raise RuntimeError(f"cannot load {what} model {model_id!r}: {exc}") from exc
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"     # batched generation continues on the right
    if getattr(processor, "chat_template", None) is None:
        raise RuntimeError(f"{what} model {model_id!r} has no chat template")
    return ChatModel(model.to(device).eval(), processor, model_id)
