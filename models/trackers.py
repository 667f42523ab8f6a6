"""Point trackers: follow one point (the gripper) through a clip, forwards and backwards from a seed.

Every tracker has `track(frames, t0, xy0, reseed=None) -> (xy (T, 2), visible (T,))`: `frames` is
(T, H, W, 3) uint8 RGB, the point is `xy0` (pixels, pixel centres at integer coordinates) at frame
`t0`; `reseed(t)` is an optional localizer for frame t (pixels or None) used when the point is lost.
`xy` is the best estimate on every frame (NaN where there is none); `visible` says whether to trust it.

- `LKTracker`: OpenCV pyramidal Lucas–Kanade, frame to frame with a forward–backward check, each
  result refined against the seed's appearance (anchoring removes drift), occlusion detected by
  normalized cross-correlation with the seed template, and re-acquisition by template search
  (or the localizer) once the point is lost.
- `CoTrackerTracker`: CoTracker3 from torch.hub (offline up to a clip length, online beyond).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

Reseed = Callable[[int], "tuple[float, float] | None"]

_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)


def check_seed(frames: np.ndarray, t0: int, xy0: tuple[float, float]) -> None:
    """Clear errors for a query that cannot be tracked."""
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"expected a non-empty (T, H, W, 3) clip, got shape {frames.shape}")
    if not 0 <= t0 < frames.shape[0]:
        raise ValueError(f"seed frame {t0} is outside the clip (0..{frames.shape[0] - 1})")
    height, width = frames.shape[1:3]
    x, y = xy0
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise ValueError(f"point ({x:.1f}, {y:.1f}) is outside the {width}x{height} image")


@dataclass(frozen=True)
class LKParams:
    win_size: int = 21          # LK window (px); also the appearance template's size
    max_level: int = 3          # pyramid levels for frame-to-frame flow (fast moves)
    fb_threshold: float = 1.0   # forward–backward error (px) above which a step is rejected
    anchor_tolerance: float = 3.0  # max shift (px) the anchor refinement may apply
    # Template correlation (NCC): a clean view of the same patch scores ~0.95+, textured
    # background can reach ~0.8 by chance, an occluder far less.
    visible_ncc: float = 0.7    # below this the point counts as occluded
    confident_ncc: float = 0.9  # below this the LK result is double-checked by template search
    reacquire_ncc: float = 0.85  # needed to pick the point up again by search
    search_radius: int = 24     # template search radius (px); grows with each doubtful frame
    reanchor_after: int = 5     # frames the localizer must keep finding a point we cannot match


class _Anchor:
    """The appearance the point is tied to: a frame, the point in it and its template."""

    def __init__(self, gray: np.ndarray, xy: np.ndarray, win: int) -> None:
        self.gray, self.xy = gray, xy.astype(np.float32)
        self.template = cv2.getRectSubPix(gray, (win, win), tuple(map(float, xy)))


def _lk(prev: np.ndarray, nxt: np.ndarray, pt: np.ndarray, guess: np.ndarray, win: int,
        levels: int) -> tuple[np.ndarray, float]:
    """One LK step with a forward–backward check → (new point, fb error; inf when lost)."""
    p0 = pt.reshape(1, 1, 2).astype(np.float32)
    p1 = guess.reshape(1, 1, 2).astype(np.float32).copy()
    p1, st, _ = cv2.calcOpticalFlowPyrLK(prev, nxt, p0, p1, winSize=(win, win), maxLevel=levels,
                                         criteria=_LK_CRITERIA, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    if not st[0, 0]:
        return pt, float("inf")
    back = p0.copy()
    p2, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, prev, p1, back, winSize=(win, win),
                                          maxLevel=levels, criteria=_LK_CRITERIA,
                                          flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    if not st2[0, 0]:
        return p1.reshape(2), float("inf")
    return p1.reshape(2), float(np.linalg.norm(p2.reshape(2) - pt))


def _ncc(gray: np.ndarray, xy: np.ndarray, template: np.ndarray) -> float:
    patch = cv2.getRectSubPix(gray, template.shape[::-1], tuple(map(float, xy)))
    return float(cv2.matchTemplate(patch, template, cv2.TM_CCOEFF_NORMED)[0, 0])


def _search(gray: np.ndarray, template: np.ndarray, centre: np.ndarray, radius: int
            ) -> tuple[np.ndarray, float]:
    """Best template match (integer px) within `radius` of `centre` → (xy, correlation)."""
    half = template.shape[0] // 2
    height, width = gray.shape
    x0 = int(np.clip(round(centre[0]) - radius - half, 0, width - template.shape[1]))
    y0 = int(np.clip(round(centre[1]) - radius - half, 0, height - template.shape[0]))
    x1 = int(np.clip(round(centre[0]) + radius + half + 1, x0 + template.shape[1], width))
    y1 = int(np.clip(round(centre[1]) + radius + half + 1, y0 + template.shape[0], height))
    scores = cv2.matchTemplate(gray[y0:y1, x0:x1], template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    return np.array([x0 + bx + half, y0 + by + half], np.float32), float(best)


class LKTracker:
    name = "lk"

    def __init__(self, params: LKParams = LKParams()) -> None:
        self.params = params

    def track(self, frames: np.ndarray, t0: int, xy0: tuple[float, float],
              reseed: Reseed | None = None) -> tuple[np.ndarray, np.ndarray]:
        check_seed(frames, t0, xy0)
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        xy = np.full((len(frames), 2), np.nan)
        visible = np.zeros(len(frames), bool)
        for order in (range(t0, len(frames)), range(t0, -1, -1)):
            seq = list(order)
            pts, vis = self._track_sequence([gray[i] for i in seq], np.array(xy0, np.float32),
                                            None if reseed is None else (lambda k: reseed(seq[k])))
            xy[seq], visible[seq] = pts, vis
        return xy, visible

    def _track_sequence(self, gray: list[np.ndarray], xy0: np.ndarray,
                        reseed: Callable[[int], "tuple[float, float] | None"] | None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Track forwards through `gray` from its first frame."""
        p = self.params
        height, width = gray[0].shape
        anchor = _Anchor(gray[0], xy0, p.win_size)
        out = np.full((len(gray), 2), np.nan)
        visible = np.zeros(len(gray), bool)
        out[0], visible[0] = xy0, True
        pos, velocity = xy0.copy(), np.zeros(2, np.float32)
        lost = doubtful = localized = 0   # consecutive frames lost / unconfident / localizer-only
        for k in range(1, len(gray)):
            found, estimate, score = None, None, -1.0
            if lost == 0:
                guess = pos + velocity
                cand, fb = _lk(gray[k - 1], gray[k], pos, guess, p.win_size, p.max_level)
                if fb <= p.fb_threshold:
                    estimate = cand = self._refine(gray[k], anchor, cand)
                    score = _ncc(gray[k], cand, anchor.template)
                if score < p.confident_ncc:
                    # fast move, occlusion or a wrong lock: search around the prediction
                    s_cand, s_score = _search(gray[k], anchor.template, guess,
                                              p.search_radius * (1 + doubtful))
                    if s_score > score:
                        cand = self._refine(gray[k], anchor, s_cand)
                        score = _ncc(gray[k], cand, anchor.template)
                if score < p.visible_ncc:
                    # a move faster than the local search covers: one wide look before giving up
                    s_cand, s_score = _search(gray[k], anchor.template, guess, 4 * p.search_radius)
                    if s_score >= p.reacquire_ncc:
                        cand = self._refine(gray[k], anchor, s_cand)
                        score = _ncc(gray[k], cand, anchor.template)
                if score >= p.visible_ncc:
                    found = cand
            else:
                hint = reseed(k) if reseed is not None else None
                centre = pos + velocity * min(lost, 3) if hint is None else np.float32(hint)
                radius = p.search_radius * (1 + lost) if hint is None else p.search_radius
                cand, score = _search(gray[k], anchor.template, centre, radius)
                if score >= p.reacquire_ncc:
                    cand = self._refine(gray[k], anchor, cand)
                    score = _ncc(gray[k], cand, anchor.template)
                    found = cand if score >= p.visible_ncc else None
                if found is None and hint is not None:
                    localized += 1
                    estimate = np.float32(hint)
                    if localized >= p.reanchor_after and _inside(hint, width, height):
                        # the localizer keeps finding a gripper that no longer looks like the
                        # template (it turned, opened): trust it and take its new appearance
                        found, score = estimate, 1.0
                        anchor = _Anchor(gray[k], found, p.win_size)
            if found is not None and _inside(found, width, height):
                if score >= p.confident_ncc:   # only sure positions feed the motion model
                    velocity = (found - pos) / (lost + 1)
                doubtful = 0 if score >= p.confident_ncc else doubtful + 1
                pos, lost, localized = found, 0, 0
                out[k], visible[k] = found, True
            else:
                lost += 1
                if estimate is None:
                    estimate = pos + velocity * min(lost, 3)
                out[k] = np.clip(estimate, 0, [width - 1, height - 1])
        return out, visible

    def _refine(self, gray: np.ndarray, anchor: _Anchor, cand: np.ndarray) -> np.ndarray:
        """Sub-pixel position tied to the anchor's appearance, which removes frame-to-frame drift
        (single level: the candidate is already close, coarser levels would mix in background)."""
        p = self.params
        refined, fb = _lk(anchor.gray, gray, anchor.xy, cand, p.win_size, 0)
        ok = fb <= p.fb_threshold and np.linalg.norm(refined - cand) <= p.anchor_tolerance
        return refined if ok else cand


def _inside(xy: "np.ndarray | tuple[float, float]", width: int, height: int) -> bool:
    return bool(0 <= xy[0] <= width - 1 and 0 <= xy[1] <= height - 1)
