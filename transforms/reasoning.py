"""Reasoning stage: embodied chain-of-thought text per step (SPEC §7), from four parts.

- motion: language motions from the state (the ECoT rule, `armdata.transforms.motion`), no model;
  without a usable state they come from the canonical actions (`states_from_actions`).
- caption: one VLM call per episode on its first kept frame, batched across episodes.
- objects: an open-vocabulary detector prompted with the caption's phrases, batched over frames,
  every step or every `objects_every` steps (carried between).
- plan: one text-only call per episode (local model or OpenAI-compatible endpoint) asking for a
  plan, subtasks with step ranges and reasons; parsed strictly, one retry quoting the error, then
  a deterministic plan from gripper events and motion runs (counted `plan_fallback`). With
  `planner="rules"` (`--planner rules`) that rule-based plan is the plan, no model (counted
  `plan_rules`, plan source "rules").
The `reasoning` column is composed deterministically from the parts that ran.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
from typing import Any, Sequence

import numpy as np

from armdata.models.captioner import DEFAULT_CAPTIONER_MODEL, ChatModel, load_chat_model
from armdata.models.detector import DEFAULT_OBJECTS_MODEL, Detector, caption_phrases, load_detector
from armdata.models.device import DEVICE_CHOICES, resolve_device
from armdata.models.planner import EndpointClient, EndpointError
from armdata.models.provenance import describe_model
from armdata.transforms.prompts import Prompt, load_prompt
from armdata.schemas.columns import normalize_point, plan_text, serialize_objects
from armdata.schemas.config import ConfigError, DatasetConfig, MotionConfig
from armdata.schemas.episode import Episode, Rejection, decode_rgb
from armdata.transforms.base import Stage, shared_model
from armdata.transforms.motion import episode_motions, motion_runs, motion_states, states_from_actions
from armdata.transforms.plan import Plan, PlanError, compose_reasoning, fallback_plan, parse_plan, \
    runs_text

log = logging.getLogger(__name__)

PARTS = ("motion", "caption", "objects", "plan")
PLANNERS = ("model", "rules")   # --planner: a chat model (local or endpoint), or the rule-based plan
GRIPPER_POINTS = 5          # current and next 4 positions (SPEC §7)


def parse_parts(text: str) -> tuple[str, ...]:
    parts = {p.strip() for p in text.split(",") if p.strip()}
    unknown = sorted(parts - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"--reasoning-parts: unknown or no part(s) {unknown}; choose from "
                         f"{', '.join(PARTS)}")
    if "objects" in parts and "caption" not in parts:
        raise ValueError("--reasoning-parts objects needs caption (the detector's phrases)")
    if "plan" in parts and "motion" not in parts:
        raise ValueError("--reasoning-parts plan needs motion (the planner reads the motions)")
    return tuple(p for p in PARTS if p in parts)


def gripper_position(points: Sequence[tuple[float, float] | None], p: int, width: int,
                     height: int) -> str | None:
    """Flattened 256-unit positions of steps p..p+4 that have one, `[x0, y0, x1, y1, ...]`."""
    flat = [v for xy in points[p:p + GRIPPER_POINTS] if xy is not None
            for v in normalize_point(xy[0], xy[1], width, height)]
    return "[" + ", ".join(map(str, flat)) + "]" if flat else None


class ReasoningStage(Stage):
    name = "reasoning"

    def __init__(self, motion: MotionConfig = MotionConfig(), parts: Sequence[str] = ("motion",),
                 captioner_model: str = DEFAULT_CAPTIONER_MODEL, captioner_batch_size: int = 8,
                 captioner_max_new_tokens: int = 64, objects_model: str = DEFAULT_OBJECTS_MODEL,
                 objects_every: int = 1, objects_batch_size: int = 16,
                 planner_model: str | None = None, planner_endpoint: str | None = None,
                 planner_token_env: str | None = "ARMDATA_PLANNER_TOKEN",
                 planner_timeout: float = 60.0, planner_retries: int = 3,
                 planner_backoff: float = 1.0, planner_max_new_tokens: int = 512,
                 planner: str = "model", device: str = "auto") -> None:
        super().__init__()
        self.parts = parse_parts(",".join(parts))
        if min(captioner_batch_size, captioner_max_new_tokens, objects_every, objects_batch_size,
               planner_max_new_tokens) < 1:
            raise ValueError("reasoning batch sizes, token limits and --objects-every must be ≥ 1")
        if device not in DEVICE_CHOICES:
            raise ValueError(f"reasoning device must be one of {DEVICE_CHOICES}, got {device!r}")
        self.motion_cfg = motion
        self.captioner_model, self.captioner_max_new_tokens = captioner_model, \
            captioner_max_new_tokens
        self.objects_model, self.objects_every = objects_model, objects_every
        self.objects_batch_size = objects_batch_size
        self.planner_model = planner_model or captioner_model
        self.planner_endpoint, self.planner_token_env = planner_endpoint, planner_token_env
        self.planner_timeout, self.planner_retries = planner_timeout, planner_retries
        self.planner_backoff, self.planner_max_new_tokens = planner_backoff, planner_max_new_tokens
        self.device = device
        if planner not in PLANNERS:
            raise ValueError(f"--planner {planner}: choose from {', '.join(PLANNERS)}")
        self.planner = planner
        if planner_endpoint:   # validates the URL and limits now, before the job
            EndpointClient(planner_endpoint, self.planner_model, planner_token_env,
                           planner_timeout, planner_retries, planner_backoff)
        self.batch_episodes = captioner_batch_size if {"caption", "plan"} & set(self.parts) else 1
        self.caption_prompt = load_prompt("caption", ("user",))
        self.plan_prompt = load_prompt("plan", ("system", "user", "retry"))
        self._captioner: ChatModel | None = None
        self._planner: ChatModel | EndpointClient | None = None
        self._detector: Detector | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()   # models never travel: each worker loads them in setup()
        state.update(_captioner=None, _planner=None, _detector=None)
        return state

    def setup(self) -> None:
        if "plan" in self.parts and self.planner == "model" and self.planner_endpoint:
            self._planner = self._endpoint()
        if not ("caption" in self.parts or "objects" in self.parts or self._plan_model()):
            return
        device = resolve_device(self.device, "reasoning models")
        if "caption" in self.parts:
            self._captioner = shared_model(("chat", self.captioner_model, str(device)),
                                           lambda: load_chat_model(self.captioner_model, device))
        if self._plan_model():
            self._planner = shared_model(
                ("chat", self.planner_model, str(device)),
                lambda: load_chat_model(self.planner_model, device, "planner"))
        if "objects" in self.parts:
            self._detector = shared_model(("detector", self.objects_model, str(device)),
                                          lambda: load_detector(self.objects_model, device))

    def _plan_model(self) -> bool:
        """Whether the plan comes from a local model (not an endpoint, not the rules)."""
        return "plan" in self.parts and self.planner == "model" and not self.planner_endpoint

    def _endpoint(self) -> EndpointClient:
        return EndpointClient(self.planner_endpoint, self.planner_model, self.planner_token_env,
                              self.planner_timeout, self.planner_retries, self.planner_backoff)

    offline = "--reasoning-parts motion (with --planner rules: motion,plan)"

    def models(self) -> dict[str, Any]:
        out = {"--captioner-model": self.captioner_model} if "caption" in self.parts else {}
        if "objects" in self.parts:
            out["--objects-model"] = self.objects_model
        if self._plan_model():
            out["--planner-model"] = self.planner_model
        return out

    def options(self) -> dict[str, Any]:
        """Models (ids, revisions), prompts (versions, sha256) and settings, for the manifest."""
        out: dict[str, Any] = {"parts": list(self.parts), "motion": {
            "rule": "SPEC §7 (ECoT)", "config": json.loads(json.dumps(self.motion_cfg.__dict__))}}
        if "caption" in self.parts:
            out["captioner"] = {"model": self.captioner_model,
                                **describe_model(self.captioner_model, "--captioner-model"),
                                "max_new_tokens": self.captioner_max_new_tokens,
                                "batch_size": self.batch_episodes,
                                "prompt": _prompt_info(self.caption_prompt)}
        if "objects" in self.parts:
            out["objects"] = {"model": self.objects_model,
                              **describe_model(self.objects_model, "--objects-model"),
                              "every": self.objects_every}
        if "plan" in self.parts and self.planner == "rules":
            out["planner"] = {"rules": "gripper events and motion runs (transforms/plan.py)"}
        elif "plan" in self.parts:
            out["planner"] = {"model": self.planner_model,
                              **({"revision": "served"} if self.planner_endpoint
                                 else describe_model(self.planner_model, "--planner-model")),
                              "endpoint": self.planner_endpoint,
                              "max_new_tokens": self.planner_max_new_tokens,
                              "prompt": _prompt_info(self.plan_prompt)}
        return out

    # --- the stage ------------------------------------------------------------------------------

    def process(self, episode: Episode) -> tuple[Episode | None, list[Rejection]]:
        return self.process_batch([episode])[0]

    def process_batch(self, episodes: list[Episode]
                      ) -> list[tuple[Episode | None, list[Rejection]]]:
        work = [e for e in episodes if e.steps]
        motions = [self._motions(e) for e in work]
        captions = self._captions(work) if "caption" in self.parts else [None] * len(work)
        plans = self._plans(work, motions, captions) if "plan" in self.parts \
            else [None] * len(work)
        for episode, labels, caption, plan in zip(work, motions, captions, plans):
            objects = self._objects(episode, caption) if "objects" in self.parts else None
            self._fill(episode, labels if "motion" in self.parts else None, caption, objects,
                       plan, labels)
        return [(e, []) for e in episodes]

    def _motions(self, episode: Episode) -> list[str]:
        whole = motion_states(episode.source_states, self.motion_cfg) \
            if episode.source_states is not None else None
        if whole is not None and len(whole) == episode.num_steps and np.isfinite(whole).all():
            # ECoT labels every source step; the kept ones take theirs (a step the config drops,
            # such as Bridge's last, still ends the windows before it)
            self.count("motion_from_state")
            labels = episode_motions(whole, range(episode.num_steps), episode.num_steps,
                                     self.motion_cfg)
            return [labels[s.index] for s in episode.steps]
        states = motion_states(episode.states(), self.motion_cfg)
        if states is None:
            self.count("motion_from_actions")
            states = states_from_actions(episode.actions())
        else:
            self.count("motion_from_state")
        return episode_motions(states, [s.index for s in episode.steps], episode.num_steps,
                               self.motion_cfg)

    def _captions(self, episodes: list[Episode]) -> list[str | None]:
        from PIL import Image

        todo, images, conversations = [], [], []
        for k, episode in enumerate(episodes):
            frame = self._first_frame(episode)
            if frame is None:
                continue
            prompt = self.caption_prompt.format(
                "user", instruction=episode.steps[0].instruction.strip().rstrip("."))
            todo.append(k)
            images.append(Image.fromarray(frame))
            conversations.append([{"role": "user", "content": [
                {"type": "image"}, {"type": "text", "text": prompt}]}])
        captions: list[str | None] = [None] * len(episodes)
        if todo:
            answers = self._captioner.generate(conversations, images,
                                               self.captioner_max_new_tokens)
            self.count("caption_calls", len(todo))
            self.count("caption_batches")
            for k, answer in zip(todo, answers):
                if answer:
                    captions[k] = answer
                else:
                    self.count("caption_empty")
        return captions

    def _first_frame(self, episode: Episode) -> np.ndarray | None:
        """The first kept frame that decodes (validation already dropped corrupt ones)."""
        for step in episode.steps:
            try:
                return decode_rgb(step.image)
            except ValueError as exc:
                log.warning("reasoning %s step %d: %s", episode.episode_id, step.index, exc)
                self.count("caption_frame_undecodable")
        self.count("caption_no_frame")
        return None

    def _plans(self, episodes: list[Episode], motions: list[list[str]],
               captions: list[str | None]) -> list[Plan]:
        indices = [[s.index for s in e.steps] for e in episodes]
        runs = [motion_runs(m, ix) for m, ix in zip(motions, indices)]
        if self.planner == "rules":
            self.count("plan_rules", len(episodes))
            return [fallback_plan(ix, e.actions()[:, 6], rr, "rules")
                    for e, ix, rr in zip(episodes, indices, runs)]
        conversations = []
        for episode, ix, rr, caption in zip(episodes, indices, runs, captions):
            user = self.plan_prompt.format(
                "user", instruction=episode.steps[0].instruction.strip(),
                caption=caption or "(no caption)", first=ix[0], last=ix[-1],
                runs=runs_text(rr), n_runs=len(rr))
            conversations.append([{"role": "system", "content": self.plan_prompt.templates[
                "system"]}, {"role": "user", "content": user}])
        plans: list[Plan | None] = [None] * len(episodes)
        errors: dict[int, str] = {}
        answers = self._ask(conversations)
        for k, answer in enumerate(answers):
            plans[k], errors[k] = self._parse(answer, indices[k], len(runs[k]))
        retry = [k for k in range(len(episodes)) if plans[k] is None and answers[k] is not None]
        if retry:
            self.count("plan_retries", len(retry))
            follow = [conversations[k] + [
                {"role": "assistant", "content": answers[k]},
                {"role": "user", "content": self.plan_prompt.format("retry", error=errors[k])}]
                for k in retry]
            for k, answer in zip(retry, self._ask(follow)):
                plans[k], errors[k] = self._parse(answer, indices[k], len(runs[k]))
        out = []
        for k, episode in enumerate(episodes):
            if plans[k] is None:
                log.warning("reasoning %s: deterministic plan (%s)", episode.episode_id, errors[k])
                self.count("plan_fallback")
                gripper = episode.actions()[:, 6]
                plans[k] = fallback_plan(indices[k], gripper, runs[k])
            out.append(plans[k])
        return out

    def _ask(self, conversations: list[list[dict[str, Any]]]) -> list[str | None]:
        """The planner's answers (None where an endpoint call failed after its retries)."""
        self.count("plan_calls", len(conversations))
        if isinstance(self._planner, EndpointClient):   # the batch's calls run concurrently
            with concurrent.futures.ThreadPoolExecutor(len(conversations)) as pool:
                answers = list(pool.map(self._chat, conversations))
            self.count("plan_endpoint_failed", sum(a is None for a in answers))
            return answers
        self.count("plan_batches")
        return list(self._planner.generate(conversations, None, self.planner_max_new_tokens))

    def _chat(self, conversation: list[dict[str, Any]]) -> str | None:
        try:
            return self._planner.chat(conversation, self.planner_max_new_tokens)
        except EndpointError as exc:   # counted by the caller (this runs in a thread)
            log.warning("%s", exc)
            return None

    def _parse(self, answer: str | None, indices: list[int], n_runs: int
               ) -> tuple[Plan | None, str]:
        if answer is None:
            return None, "no answer from the planner endpoint"
        try:
            return parse_plan(answer, indices, n_runs), ""
        except PlanError as exc:
            self.count("plan_invalid_answers")
            return None, str(exc)

    def _objects(self, episode: Episode, caption: str | None
                 ) -> list[tuple[str, list[float]] | None]:
        """Per step: detections of the caption's phrases (the `objects` text and each box's
        score), on every `objects_every`-th step."""
        phrases = caption_phrases(caption) if caption else []
        if not phrases:
            self.count("objects_no_phrases")
            return [None] * len(episode.steps)
        chosen = list(range(0, len(episode.steps), self.objects_every))
        found: dict[int, tuple[str, list[float]]] = {}
        for start in range(0, len(chosen), self.objects_batch_size):
            batch = chosen[start:start + self.objects_batch_size]
            try:
                frames = [decode_rgb(episode.steps[p].image) for p in batch]
            except ValueError as exc:
                log.warning("reasoning %s: %s", episode.episode_id, exc)
                self.count("objects_frame_undecodable")
                continue
            if len({f.shape for f in frames}) != 1:
                self.count("objects_frame_size_varies")
                continue
            for p, boxes in zip(batch, self._detector.detect(frames, phrases)):
                found[p] = (serialize_objects([(phrase, box) for phrase, box, _ in boxes]),
                            [score for *_, score in boxes])
            self.count("detector_frames", len(batch))
            self.count("detector_batches")
        out, last = [], None
        for p in range(len(episode.steps)):
            last = found.get(p, last if p % self.objects_every else None)
            out.append(last)
        return out

    def _fill(self, episode: Episode, motions: list[str] | None, caption: str | None,
              objects: list[tuple[str, list[float]] | None] | None, plan: Plan | None,
              labels: list[str]) -> None:
        indices = [s.index for s in episode.steps]
        per_step = plan.per_step(indices, motion_runs(labels, indices)) if plan else None
        points = [s.gripper_xy for s in episode.steps]
        for p, step in enumerate(episode.steps):
            step.motion = motions[p] if motions else None
            step.scene_caption = caption
            found = objects[p] if objects else None
            step.objects, step.object_scores = found if found else (None, None)
            if per_step:
                remaining, sub, move_reason = per_step[p]
                step.plan, step.subtask = remaining, sub.text
                step.subtask_reason, step.move_reason = sub.reason, move_reason
            step.reasoning = compose_reasoning({
                "TASK": step.instruction.strip(),
                "PLAN": plan_text(step.plan) if step.plan else None,
                "VISIBLE OBJECTS": step.objects,
                "SUBTASK REASONING": step.subtask_reason, "SUBTASK": step.subtask,
                "MOVE REASONING": step.move_reason, "MOVE": step.motion,
                "GRIPPER POSITION": gripper_position(points, p, step.image_width,
                                                     step.image_height)})
            self.count("steps")
            self.count("steps_with_objects", int(step.objects is not None))
        self.count("episodes")
        self.count("episodes_plan_" + plan.source if plan else "episodes_without_plan")


def _prompt_info(prompt: Prompt) -> dict[str, Any]:
    return {"name": prompt.name, "version": prompt.version, "sha256": prompt.sha256}


def add_build_arguments(parser: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    parser.add_argument("--reasoning-parts", default=",".join(PARTS),
                        help=f"comma list of {', '.join(PARTS)} (default: all; motion needs no "
                             f"model, objects needs caption, plan needs motion)")
    parser.add_argument("--captioner-model", default=DEFAULT_CAPTIONER_MODEL,
                        help="transformers chat VLM (Hub id or directory) for scene captions")
    parser.add_argument("--captioner-batch-size", type=int, default=8,
                        help="episodes captioned (and planned) per batch")
    parser.add_argument("--captioner-max-new-tokens", type=int, default=64)
    parser.add_argument("--objects-model", default=DEFAULT_OBJECTS_MODEL,
                        help="Grounding DINO or OWLv2 (Hub id or directory)")
    parser.add_argument("--objects-every", type=int, default=1,
                        help="detect on every N-th step, carrying the objects between")
    parser.add_argument("--objects-batch-size", type=int, default=16, help="frames per batch")
    parser.add_argument("--planner", choices=PLANNERS, default="model",
                        help="model: a chat model writes the plan (rule-based plan when its "
                             "answer is unusable, counted plan_fallback); rules: the rule-based "
                             "plan from gripper events and motion runs, no model (offline)")
    parser.add_argument("--planner-model",
                        help="chat model for the plan (default: the captioner model, text only); "
                             "with --planner-endpoint, the served model's name")
    parser.add_argument("--planner-endpoint",
                        help="OpenAI-compatible server (e.g. http://host:8000/v1) for the plan")
    parser.add_argument("--planner-token-env", default="ARMDATA_PLANNER_TOKEN",
                        help="environment variable holding the endpoint's bearer token")
    parser.add_argument("--planner-timeout", type=float, default=60.0, help="seconds per call")
    parser.add_argument("--planner-retries", type=int, default=3,
                        help="retries of a failed endpoint call (exponential backoff from 1 s)")
    parser.add_argument("--planner-max-new-tokens", type=int, default=512)
    parser.add_argument("--reasoning-device", choices=DEVICE_CHOICES, default="auto")


def stage_from_args(args: argparse.Namespace, config: DatasetConfig) -> ReasoningStage:
    try:
        return ReasoningStage(
            motion=config.motion, parts=parse_parts(args.reasoning_parts),
            captioner_model=args.captioner_model, captioner_batch_size=args.captioner_batch_size,
            captioner_max_new_tokens=args.captioner_max_new_tokens,
            objects_model=args.objects_model, objects_every=args.objects_every,
            objects_batch_size=args.objects_batch_size, planner_model=args.planner_model,
            planner_endpoint=args.planner_endpoint, planner_token_env=args.planner_token_env,
            planner_timeout=args.planner_timeout, planner_retries=args.planner_retries,
            planner_max_new_tokens=args.planner_max_new_tokens, planner=args.planner,
            device=args.reasoning_device)
    except ValueError as exc:
        raise ConfigError(f"reasoning stage ({config.name}): {exc}") from exc
