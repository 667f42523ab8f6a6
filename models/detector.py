"""Open-vocabulary object detection for the reasoning stage's VISIBLE OBJECTS (SPEC §7): Grounding
DINO or OWLv2 through transformers (AutoProcessor + AutoModelForZeroShotObjectDetection), prompted
with the phrases of the scene caption, batched over frames."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from armdata.schemas.columns import ScoredBox

log = logging.getLogger(__name__)

# Apache-2.0; ECoT used Grounding DINO base with these thresholds.
DEFAULT_OBJECTS_MODEL = "IDEA-Research/grounding-dino-base"
BOX_THRESHOLD, TEXT_THRESHOLD = 0.3, 0.2

def caption_phrases(caption: str, max_phrases: int = 16) -> list[str]:
    """The detector's queries: the caption's clauses (ECoT: ", " → ". "), lower-cased, without
    trailing punctuation, deduplicated in order."""
    parts = re.split(r",\s+|\.\s+|;\s+|\n+", caption.strip().lower())
    out: list[str] = []
    for p in parts:
        p = p.strip(" .;:!?\"'")
        if p and p not in out:
            out.append(p)
    return out[:max_phrases]


def to_boxes(labels: Sequence[str], boxes: np.ndarray, scores: np.ndarray, width: int,
             height: int) -> list[ScoredBox]:
    """Detections → [(phrase, integer box clipped to the frame, score)], best score first (ties
    by phrase and box, so the order is deterministic)."""
    out = []
    for label, box, score in zip(labels, np.asarray(boxes, np.float64), np.asarray(scores)):
        if not str(label).strip() or not np.isfinite(box).all():
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        clipped = (min(max(x0, 0), width), min(max(y0, 0), height),
                   min(max(x1, 0), width), min(max(y1, 0), height))
        out.append((-float(score), str(label).strip(), clipped))
    return [(label, box, -neg) for neg, label, box in sorted(out)]


@dataclass
class Detector:
    model: Any
    processor: Any
    model_id: str
    box_threshold: float = BOX_THRESHOLD
    text_threshold: float = TEXT_THRESHOLD

    @property
    def grounding(self) -> bool:
        """Grounding DINO style (one text, text threshold) rather than OWL style."""
        return "grounding" in type(self.model).__name__.lower()

    def detect(self, frames: Sequence[np.ndarray], phrases: Sequence[str]) -> list[list[ScoredBox]]:
        """Boxes per frame (RGB uint8, one size) for the same phrases, as one batch."""
        import torch
        from PIL import Image
        from transformers import BatchFeature

        if not phrases or not len(frames):
            return [[] for _ in frames]
        images = [Image.fromarray(f) for f in frames]
        height, width = frames[0].shape[:2]
        text = [list(phrases)] * len(images)
        with torch.inference_mode():
            # as a BatchFeature, whose .to() casts the floating tensors only: before transformers
            # 5, Grounding DINO's processor returns a BatchEncoding, whose .to() takes no dtype
            inputs = BatchFeature(self.processor(images=images, text=text, return_tensors="pt",
                                                 padding=True))
            inputs = inputs.to(self.model.device, dtype=self.model.dtype)
            outputs = self.model(**inputs)
            sizes = [(height, width)] * len(images)
            if self.grounding:
                results = self.processor.post_process_grounded_object_detection(
                    outputs, inputs["input_ids"], threshold=self.box_threshold,
                    text_threshold=self.text_threshold, target_sizes=sizes)
            else:
                results = self.processor.post_process_grounded_object_detection(
                    outputs, threshold=self.box_threshold, target_sizes=sizes, text_labels=text)
        return [to_boxes(r["text_labels"] if "text_labels" in r else r["labels"],
                         r["boxes"].float().cpu().numpy(), r["scores"].float().cpu().numpy(),
                         width, height) for r in results]


def load_detector(model_id: str, device: Any) -> Detector:
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        processor = AutoProcessor.from_pretrained(model_id)
        model = AutoModelForZeroShotObjectDetection.from_pretrained(model_id, dtype=dtype)
    except Exception as exc:
        raise RuntimeError(f"cannot load objects model {model_id!r}: {exc}") from exc
    return Detector(model.to(device).eval(), processor, model_id)
