"""Point trackers: follow one point (the gripper) through a clip, forwards and backwards from a
seed.

Every tracker has `track(frames, t0, xy0, reseed=None) -> (xy (T, 2), visible (T,))`: `frames` is
(T, H, W, 3) uint8 RGB, the point is `xy0` (pixels, pixel centres at integer coordinates) at frame
`t0`; `reseed(t)` is an optional localizer for frame t (pixels or None), asked where the tracker is
unsure. `AffineTracker` also takes a free `guide` (`Guide`, e.g. `armdata.models.state_guide.StateGuide`):
told every confirmed position, it predicts where to look on an unsure frame before the localizer
is asked. `xy` is the best estimate on every frame (NaN where there is none; where the point is not
seen: the localizer's answer, else a short extrapolation of the last motion); `visible` says
whether the point is seen there.

- `LKTracker`: OpenCV pyramidal Lucas–Kanade, frame to frame with a forward–backward check, each
  result refined against the latest confirmed appearance (anchoring limits drift) and judged by
  normalized cross-correlation with it. Where that is doubtful the localizer decides the
  position and appearance only whether the gripper is seen there (its appearance is then
  re-anchored: grippers turn and open); without a localizer, a template search re-acquires it.
- `AffineTracker` (the default): the gripper's appearance, aligned to each frame by an affine
  ECC warp (rotation, scale, shear, and gain/bias of the light) after a coarse template search
  around the predicted position; a view that no longer fits (fingers, light) becomes the new
  reference only when it is seen cleanly. After a loss (occlusion) it searches wider, with the
  clean views seen so far and turned copies of the latest one, and takes the gripper back only on
  strong evidence. Where the alignment is weak it checks the guide's prediction, then asks the
  localizer.
- `CoTrackerTracker`: CoTracker3 from torch.hub (offline up to a clip length, online beyond).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Callable, Protocol

import cv2
import numpy as np

from armdata.schemas.episode import DataError

log = logging.getLogger(__name__)

Reseed = Callable[[int], "tuple[float, float] | None"]


class Guide(Protocol):
    """A free predictor of the point's position (no model call), learning from the tracker."""

    def predict(self, t: int) -> "tuple[np.ndarray, bool] | None":
        """(position, whether it settles the position like a localizer would) or None."""

    def seen(self, t: int, xy: np.ndarray) -> None: ...


class _Along:
    """A guide seen through one tracking direction: position k of the run is frame seq[k]."""

    def __init__(self, guide: Guide, seq: list[int]) -> None:
        self.guide, self.seq = guide, seq

    def predict(self, k: int) -> "tuple[np.ndarray, bool] | None":
        return self.guide.predict(self.seq[k])

    def seen(self, k: int, xy: np.ndarray) -> None:
        self.guide.seen(self.seq[k], xy)

_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)


def check_seed(frames: np.ndarray, t0: int, xy0: tuple[float, float]) -> None:
    """Clear errors for a query that cannot be tracked (DataError: in a build, the seed comes from
    the episode's data, e.g. a gripper projected just outside the frame)."""
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise DataError(f"expected a non-empty (T, H, W, 3) clip, got shape {frames.shape}")
    if not 0 <= t0 < frames.shape[0]:
        raise DataError(f"seed frame {t0} is outside the clip (0..{frames.shape[0] - 1})")
    height, width = frames.shape[1:3]
    x, y = xy0
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise DataError(f"point ({x:.1f}, {y:.1f}) is outside the {width}x{height} image")


@dataclass(frozen=True)
class LKParams:
    win_size: int = 15          # LK window (px), also the template: fits grippers from ~24 px up
    max_level: int = 3          # pyramid levels for frame-to-frame flow (fast moves)
    fb_threshold: float = 1.0   # forward–backward error (px) above which a step is rejected
    anchor_tolerance: float = 3.0  # max shift (px) the anchor refinement may apply
    # Template correlation (NCC): a clean view of the same patch scores ~0.95+, textured
    # background can reach ~0.8 by chance, an occluder far less.
    visible_ncc: float = 0.7    # below this the point counts as occluded
    confident_ncc: float = 0.9  # below this the LK result is double-checked (localizer/search)
    reacquire_ncc: float = 0.85  # needed to pick the point up again by search
    min_margin: float = 0.1     # ... and by this much above the best match elsewhere
    search_radius: int = 24     # template search radius (px); grows with each doubtful frame
    agree_px: float = 4.0       # tracker and localizer this close agree
    # Next to the localizer's point the question is only "seen or hidden": a turned or opened
    # gripper still scores ~0.4+ against its last view, an occluder mostly less, and a plain
    # one (low contrast) would match itself, so it must keep a share of the gripper's contrast.
    seen_ncc: float = 0.3
    min_contrast: float = 0.25


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


def _search(gray: np.ndarray, template: np.ndarray, centre: np.ndarray, radius: int,
            partial: bool = False) -> tuple[np.ndarray, float, float]:
    """Best template match within `radius` of `centre` → (xy, correlation, margin over the best
    match elsewhere), sub-pixel by a parabolic peak fit. With `partial`, a location also scores
    its best template half, so that a gripper half hidden by an occluder is still found."""
    size = template.shape[0]
    half = size // 2
    height, width = gray.shape
    centre = np.clip(centre, 0, [width - 1, height - 1])
    x0 = int(np.clip(round(centre[0]) - radius - half, 0, width - size))
    y0 = int(np.clip(round(centre[1]) - radius - half, 0, height - size))
    x1 = int(np.clip(round(centre[0]) + radius + half + 1, x0 + size, width))
    y1 = int(np.clip(round(centre[1]) + radius + half + 1, y0 + size, height))
    region = gray[y0:y1, x0:x1]
    scores = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
    if partial:
        q = half + 1   # halves overlap on the centre row/column
        rows, cols = scores.shape
        for oy, ox, part in ((0, 0, template[:q]), (size - q, 0, template[size - q:]),
                             (0, 0, template[:, :q]), (0, size - q, template[:, size - q:])):
            half_scores = cv2.matchTemplate(region, part, cv2.TM_CCOEFF_NORMED)
            scores = np.maximum(scores, half_scores[oy:oy + rows, ox:ox + cols])
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    # distinctiveness: how far the best match stands above the best one elsewhere
    others = scores.copy()
    others[max(0, by - half):by + half + 1, max(0, bx - half):bx + half + 1] = -1.0
    margin = best - float(others.max()) if others.max() > -1.0 else best
    return np.array([x0 + half + bx + _peak_offset(scores[by, bx - 1:bx + 2]),
                     y0 + half + by + _peak_offset(scores[by - 1:by + 2, bx])],
                    np.float32), float(best), margin


def _peak_offset(three: np.ndarray) -> float:
    """Sub-pixel offset of a peak from a parabola through its value and its two neighbours."""
    if three.shape[0] != 3:
        return 0.0
    left, mid, right = map(float, three)
    curvature = left - 2 * mid + right
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def track_both_ways(frames: np.ndarray, t0: int, xy0: tuple[float, float], reseed: Reseed | None,
                    run: Callable[[list[np.ndarray], np.ndarray, Reseed | None, Guide | None],
                                  tuple[np.ndarray, np.ndarray]],
                    guide: Guide | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Track from frame t0 forwards to the end and backwards to the start: `run(gray frames in
    tracking order, start point, reseed and guide by position in that order)` tracks one
    direction."""
    check_seed(frames, t0, xy0)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    xy = np.full((len(frames), 2), np.nan)
    visible = np.zeros(len(frames), bool)
    for order in (range(t0, len(frames)), range(t0, -1, -1)):
        seq = list(order)
        pts, vis = run([gray[i] for i in seq], np.array(xy0, np.float32),
                       None if reseed is None else (lambda k: reseed(seq[k])),
                       None if guide is None else _Along(guide, seq))
        xy[seq], visible[seq] = pts, vis
    return xy, visible


class LKTracker:
    name = "lk"

    def __init__(self, params: LKParams = LKParams()) -> None:
        self.params = params

    def track(self, frames: np.ndarray, t0: int, xy0: tuple[float, float],
              reseed: Reseed | None = None) -> tuple[np.ndarray, np.ndarray]:
        return track_both_ways(frames, t0, xy0, reseed,
                               lambda gray, xy, again, _: self._track_sequence(gray, xy, again))

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
        sure_pos, sure_k = pos, 0        # last confident position feeds the motion model
        lost = doubtful = 0              # consecutive frames lost / unconfident
        trusted = True                   # the tracker agreed with the localizer when last asked
        for k in range(1, len(gray)):
            found, estimate, score = None, None, -1.0
            guess = pos + velocity * min(lost + 1, 3)
            if lost == 0:
                cand, fb = _lk(gray[k - 1], gray[k], pos, guess, p.win_size, p.max_level)
                if fb <= p.fb_threshold:   # continuity: a plain view of the template is enough
                    estimate = cand = self._refine(gray[k], anchor, cand)
                    score = _ncc(gray[k], cand, anchor.template)
                    found = cand if score >= p.visible_ncc else None
            # the localizer is asked when the tracker is unsure, and until the tracker agrees
            # with it again after a correction (the appearance it follows may be off)
            ask = reseed is not None and (score < p.confident_ncc or not trusted)
            hint = reseed(k) if ask else None
            if hint is not None:
                # The localizer settles where the gripper is; the tracker's own result stands
                # where the two agree (it is free of the localizer's noise). Appearance only
                # says whether the gripper is seen there.
                hint = np.float32(hint)
                trusted = found is not None and np.linalg.norm(found - hint) <= p.agree_px
                estimate = found if trusted else hint
                recent = cv2.getRectSubPix(gray[k - 1], anchor.template.shape[::-1],
                                           tuple(map(float, out[k - 1])))
                score, whole = self._seen(gray[k], estimate, anchor.template, recent)
                found = estimate if score >= (p.seen_ncc if whole else p.confident_ncc) else None
                if found is not None and whole:
                    anchor = _Anchor(gray[k], found, p.win_size)   # its appearance now
            elif score < p.confident_ncc:
                # fast move, occlusion or a wrong lock: search around the prediction
                if lost == 0:
                    radii = (p.search_radius * (1 + doubtful), 4 * p.search_radius)
                else:
                    radii = (p.search_radius * (1 + lost),)
                found, score = self._reacquire(gray[k], anchor, guess, radii, found, score)
            if found is not None and _inside(found, width, height):
                if score >= p.confident_ncc:
                    velocity = (found - sure_pos) / (k - sure_k)
                    sure_pos, sure_k = found, k
                doubtful = 0 if score >= p.confident_ncc else doubtful + 1
                pos, lost = found, 0
                out[k], visible[k] = found, True
            else:
                lost += 1
                if estimate is None:
                    estimate = pos + velocity * min(lost, 3)
                out[k] = np.clip(estimate, 0, [width - 1, height - 1])
        return out, visible

    def _seen(self, gray: np.ndarray, xy: np.ndarray, template: np.ndarray,
              recent: np.ndarray) -> tuple[float, bool]:
        """How well the gripper is seen near `xy` (where the localizer puts it) → (score, whether
        whole). Whole: the best match of its last seen appearance `template` or of the previous
        frame's view there (`recent`: it changed while hidden or unrecognised), meant to be read
        loosely (it turns, opens, carries things). Else the best match of one half of the
        template (the rest hidden), meant to be read strictly. A patch much plainer than the
        gripper scores -1: a plain occluder moving along with it would match itself."""
        p = self.params
        patch = cv2.getRectSubPix(gray, template.shape[::-1], tuple(map(float, xy)))
        if patch.std() < p.min_contrast * template.std():
            return -1.0, False
        radius = int(round(p.agree_px))
        score = max(_search(gray, template, xy, radius)[1], _search(gray, recent, xy, radius)[1])
        if score >= p.seen_ncc:
            return score, True
        return _search(gray, template, xy, radius, partial=True)[1], False

    def _reacquire(self, gray: np.ndarray, anchor: _Anchor, centre: np.ndarray,
                   radii: tuple[int, ...], found: np.ndarray | None, score: float
                   ) -> tuple[np.ndarray | None, float]:
        """Template search around `centre` at growing radii. A jump needs stronger evidence
        (`reacquire_ncc`) than continuity; a half-hidden gripper is placed by its visible half
        only close to the prediction. Keeps (found, score) unless something better turns up."""
        p = self.params
        for radius in radii:
            cand, s_score, margin = _search(gray, anchor.template, centre, radius)
            if s_score >= p.reacquire_ncc and s_score > score and margin >= p.min_margin:
                cand = self._refine(gray, anchor, cand)
                return cand, max(_ncc(gray, cand, anchor.template), p.visible_ncc)
            if found is not None:
                return found, score
        reach = p.search_radius // 2 if found is not None or len(radii) > 1 else radii[-1]
        cand, s_score, margin = _search(gray, anchor.template, centre, reach, partial=True)
        if s_score >= p.confident_ncc and margin >= p.min_margin:
            return cand, p.visible_ncc
        return found, score

    def _refine(self, gray: np.ndarray, anchor: _Anchor, cand: np.ndarray) -> np.ndarray:
        """Sub-pixel position tied to the anchor's appearance, which removes frame-to-frame drift
        (single level: the candidate is already close, coarser levels would mix in background)."""
        p = self.params
        refined, fb = _lk(anchor.gray, gray, anchor.xy, cand, p.win_size, 0)
        ok = fb <= p.fb_threshold and np.linalg.norm(refined - cand) <= p.anchor_tolerance
        return refined if ok else cand


def _inside(xy: "np.ndarray | tuple[float, float]", width: int, height: int) -> bool:
    return bool(0 <= xy[0] <= width - 1 and 0 <= xy[1] <= height - 1)


_ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 1e-3)


@dataclass(frozen=True)
class AffineParams:
    size: int = 0               # template side (px), odd; 0: 1/12 of the image side, ≥ 15
    pad: int = 6                # ECC works on a crop this much larger than the template
    radius: int = 12            # coarse search radius (px) beyond the predicted motion
    max_radius: int = 96        # ... growing while lost, up to this
    # ECC correlation of the reference with its aligned view. A clean view scores 0.93+, a half
    # covered one 0.6-0.9, an aligned patch of textured background up to ~0.7.
    visible: float = 0.75       # seen (while tracking)
    reacquire: float = 0.8      # seen again after a loss (a jump needs stronger evidence)
    confident: float = 0.85     # below: the view is not trusted to update the appearance
    refresh: float = 0.92       # below (and confident): the current view becomes the reference
    clean: float = 0.95         # views this clean are kept for re-acquisition
    halves: float = 0.75        # every half of a confident view must match (no partial cover)
    coarse: float = 0.4         # coarse search score needed to try an alignment
    turns: tuple[float, ...] = (-24.0, -12.0, 12.0, 24.0)   # turned views tried after a loss
    views: int = 6              # clean views kept
    view_every: int = 3         # frames between kept views
    blur: int = 1               # ECC's Gaussian pre-filter (1: none)
    agree_px: float = 4.0       # tracker and localizer this close agree
    ask_below: float = 0.75     # unsure below this: the localizer (if any) is asked
    seen: float = 0.4           # where the localizer puts it, a changed view still matches this
    min_contrast: float = 0.85  # ... and keeps this share of its contrast
    hint_turns: tuple[float, ...] = (15.0, -15.0, 30.0, -30.0)   # turns tried at a hint
    seen_again: float = 0.6     # ... or its view at the hint before, when not seen there then
    near_prediction: float = 0.6   # a guide's prediction only says where to look: a view seen
                                   # the frame before must match this well near it
    bank: int = 4               # latest confirmed views also tried at a hint
    guide_slack: float = 4.0    # a prediction that does not settle: agree_px times this
    max_scale: float = 1.4      # plausible scale change against the reference (and 1/x)
    max_aspect: float = 1.25    # plausible anisotropy of the warp


def template_size(shape: tuple[int, ...]) -> int:
    """The affine tracker's default template side for frames of this (height, width): about
    1/12 of the shorter side (roughly a gripper in typical robot camera views), odd, ≥ 15."""
    side = min(shape[:2]) // 12
    return max(15, side + 1 - side % 2)


class AffineTracker:
    """See the module docstring. Positions are the template centre mapped by the warp."""
    name = "affine"

    def __init__(self, params: AffineParams = AffineParams()) -> None:
        self.params = params

    def track(self, frames: np.ndarray, t0: int, xy0: tuple[float, float],
              reseed: Reseed | None = None, guide: Guide | None = None, precise: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
        """`precise`: the localizer's positions are exact (a calibrated projection), so where
        it is asked and the gripper is seen there, its position stands."""
        return track_both_ways(frames, t0, xy0, reseed,
                               lambda gray, xy, again, along: _AffineRun(
                                   self.params, gray, xy, again, along, precise).run(), guide)


class _AffineRun:
    """One direction of an `AffineTracker` run, forwards through `gray` from its first frame.
    A warp maps reference (template) coordinates to frame coordinates."""

    def __init__(self, params: AffineParams, gray: list[np.ndarray], xy0: np.ndarray,
                 reseed: Reseed | None, guide: Guide | None, precise: bool) -> None:
        if params.size <= 0:
            params = replace(params, size=template_size(gray[0].shape))
        self.p, self.gray, self.xy0 = params, gray, xy0
        self.reseed, self.guide, self.precise = reseed, guide, precise
        self.c = (params.size - 1) / 2
        self.height, self.width = gray[0].shape
        # the reference the warp aligns, the latest clean appearance (axis-aligned, for the
        # coarse search) and the clean views kept for re-acquisition (larger, so they can turn)
        self.reference = self.appearance = _patch(gray[0], xy0, params.size)
        self.linear = np.eye(2, dtype=np.float32)
        self.views = [_patch(gray[0], xy0, params.size + 12)]
        self.last_view = 0
        self.bank: list[np.ndarray] = []   # its latest confirmed views
        self.offered: tuple[int, np.ndarray] | None = None   # last frame not seen at its hint

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        p, n = self.p, len(self.gray)
        out = np.full((n, 2), np.nan)
        visible = np.zeros(n, bool)
        pos, velocity, lost = self.xy0.copy(), np.zeros(2, np.float32), 0
        out[0], visible[0] = pos, True
        if self.guide is not None:
            self.guide.seen(0, pos)
        candidates: list[np.ndarray] = []
        for k in range(1, n):
            gray = self.gray[k]
            guess = pos + velocity * min(lost + 1, 3)
            if lost == 0:
                radius = int(p.radius + np.abs(velocity).max())
                found, warp, score = self._locate(gray, guess, radius, 0, [])
            if lost or found is None:   # lost, or a sudden move: search wider, with more views
                if lost == 0:   # a loss begins: the clean views so far, turned copies of the latest
                    candidates = [_crop(v, p.size) for v in self.views]
                    candidates += [_crop(_turned(self.views[-1], a), p.size) for a in p.turns]
                radius = min(p.radius * (3 + lost), p.max_radius)
                found, warp, score = self._locate(gray, guess, radius, lost + 1, candidates)
            predicted = None if self.guide is None else self.guide.predict(k)
            # far from where the state puts it, it follows something else (a prediction that
            # does not settle the position may be off by a few pixels)
            if found is not None and predicted is not None and np.linalg.norm(
                    found - predicted[0]) > p.agree_px * (1 if predicted[1] else p.guide_slack):
                found, warp, score = None, None, -1.0
            # taken back after a loss: the riskiest moment (a textured cover can align), so
            # the localizer confirms it unless a settled prediction already agreed
            back = lost > 0 and not (predicted is not None and predicted[1])
            if found is None or score < p.ask_below or (back and self.reseed is not None):
                found, warp, score, hint = self._ask(k, visible[k - 1], out[k - 1], predicted,
                                                     found, warp, score)
                if found is None and hint is not None:   # its position, not seen there
                    guess = pos = hint
                    velocity = np.zeros(2, np.float32)
                    self.offered = (k, hint)
            if found is not None:
                velocity = (found - pos) / (lost + 1)
                pos, lost = found, 0
                out[k], visible[k] = found, True
                self._update(gray, k, found, warp, score)
                self.bank = self.bank[len(self.bank) + 1 - p.bank:] + [_patch(gray, found,
                                                                              p.size)]
                if self.guide is not None:
                    self.guide.seen(k, found)
            else:
                lost += 1
                out[k] = np.clip(guess, 0, [self.width - 1, self.height - 1])
        return out, visible

    def _locate(self, gray: np.ndarray, guess: np.ndarray, radius: int, lost: int,
                candidates: list[np.ndarray]
                ) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        """Coarse search around `guess`, then affine ECC → (point or None, warp, score).
        While lost, every candidate view is searched too and the best match aligned (it
        becomes the reference when the gripper is taken back)."""
        p = self.p
        reference, linear = self.reference, self.linear
        if lost:   # a wide search with many views: at half resolution, then refined
            small = cv2.pyrDown(gray)
            best, template = -1.0, self.appearance
            for view in [self.appearance] + candidates:
                c2, s2 = _match(small, cv2.pyrDown(view), guess / 2, radius // 2)
                if s2 > best:
                    cand, best, template = c2 * 2, s2, view
            cand, best = _match(gray, template, cand, 3)
            if template is not self.appearance:
                reference, linear = template, np.eye(2, dtype=np.float32)
        else:
            cand, best = _match(gray, self.appearance, guess, radius)
        if best < p.coarse:
            return None, None, -1.0
        score, warp = self._ecc(gray, reference, self._warp_at(cand, linear))
        need = p.visible if lost == 0 else p.reacquire
        point = warp @ np.float32([self.c, self.c, 1])
        if score >= need and self._plausible(warp) and _inside(point, self.width, self.height):
            self.reference = reference
            return point, warp, score
        return None, None, score

    def _ask(self, k: int, seen_before: bool, before: np.ndarray,
             predicted: tuple[np.ndarray, bool] | None, found: np.ndarray | None,
             warp: np.ndarray | None, score: float
             ) -> tuple[np.ndarray | None, np.ndarray | None, float, np.ndarray | None]:
        """Where the tracker is unsure (`found` weak, just taken back, or None): the guide's
        prediction (free), then the localizer's answer (unless the prediction settles the
        position: the localizer would add nothing) → (point or None, warp, score, the last
        position offered or None). The tracker's own point stands where one agrees with it,
        unless that one is exact; where none agrees and it is not seen where they point, it
        is not seen."""
        p = self.p
        # (position, or the localizer giving it; whether it settles the position; exact)
        offers: list[tuple[np.ndarray | Reseed, bool, bool]] = []
        if predicted is not None:
            offers.append((predicted[0], predicted[1], predicted[1]))
        if self.reseed is not None and not (predicted is not None and predicted[1]):
            offers.append((self.reseed, True, self.precise))
        hint = None
        for source, settles, exact in offers:
            offered = source(k) if callable(source) else source
            if offered is None:
                continue
            hint = np.float32(offered)
            if found is not None and np.linalg.norm(found - hint) <= p.agree_px:
                return (hint if exact else found), warp, score, hint
            point, w2, s2 = self._check_hint(k, hint, seen_before, before, settles, exact)
            if point is not None:
                return point, w2, s2, hint
        if hint is None:
            return found, warp, score, None
        return None, None, -1.0, hint   # not where it was offered: the tracker's point is not
                                        # trusted either

    def _check_hint(self, k: int, hint: np.ndarray, seen_before: bool, before: np.ndarray,
                    settles: bool, exact: bool
                    ) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        """Whether the gripper is seen at `hint` in frame k → (point or None, warp, score).

        Seen when one of its views aligns there: the reference, the latest clean appearance,
        the clean views kept from earlier (it let go of what it carried) or its latest
        confirmed views, each also turned (it turns fast between sparse frames). Else when its
        view in the frame before still matches there and the patch keeps its contrast (a
        plain occluder does not): its view where it was seen then, loosely where the hint
        `settles` the position (it may have turned or closed on something), else firmly;
        or, for a hint that settles, its view at the hint of the frame before where it was
        not recognised then, moved just as the hints moved (within a pixel). The point is
        the hint where it is `exact` (alignment) or `settles` (the matches), else where its
        view aligns or matches. The view there becomes the appearance to follow."""
        p = self.p
        gray = self.gray[k]
        identity = np.eye(2, dtype=np.float32)
        views = [(self.reference, self.linear), (self.appearance, identity)]
        views += [(_crop(view, p.size), identity) for view in reversed(self.views)]
        views += [(view, identity) for view in reversed(self.bank)]
        for angle in (0.0,) + p.hint_turns:
            turn = _rotation(angle)
            for reference, linear in views:
                s2, w2 = self._ecc(gray, reference, self._warp_at(hint, turn @ linear))
                point = w2 @ np.float32([self.c, self.c, 1])
                if (s2 >= p.visible and self._plausible(w2)
                        and np.linalg.norm(point - hint) <= p.agree_px):
                    return self._anchor(gray, hint if exact else point, max(s2, p.confident))
        if seen_before:
            recent, need = _patch(self.gray[k - 1], before, p.size), p.seen if settles \
                else p.near_prediction
            reach = int(round(p.agree_px))
        elif settles and self.offered is not None and self.offered[0] == k - 1:
            # it must have moved just as the hints say: a cover does not follow the gripper
            recent, need, reach = _patch(self.gray[k - 1], self.offered[1], p.size), \
                p.seen_again, 1
        else:
            return None, None, -1.0
        match, seen = _match(gray, recent, hint, reach)
        point = hint if settles else match
        if seen >= need and _patch(gray, point, p.size).std() >= (p.min_contrast
                                                                  * self.appearance.std()):
            return self._anchor(gray, point, p.confident)
        return None, None, -1.0

    def _anchor(self, gray: np.ndarray, point: np.ndarray, score: float
                ) -> tuple[np.ndarray, np.ndarray, float]:
        """Its view at `point` becomes the appearance to follow from now on."""
        self.reference = self.appearance = _patch(gray, point, self.p.size)
        self.linear = np.eye(2, dtype=np.float32)
        return point, self._warp_at(point, self.linear), score

    def _update(self, gray: np.ndarray, k: int, found: np.ndarray, warp: np.ndarray,
                score: float) -> None:
        """Keep the warp; a confident, wholly matching view updates the appearance, becomes
        the reference when the old one fits less well, and is kept when clean."""
        p = self.p
        self.linear = warp[:, :2].copy()
        if score < p.confident or (score < p.clean
                                   and _halves(gray, self.reference, warp) < p.halves):
            return
        self.appearance = _patch(gray, found, p.size)
        if score < p.refresh:
            self.reference, self.linear = self.appearance, np.eye(2, dtype=np.float32)
        if score >= p.clean and k - self.last_view >= p.view_every:
            self.views = self.views[1 - p.views:] + [_patch(gray, found, p.size + 12)]
            self.last_view = k

    def _warp_at(self, xy: np.ndarray, linear: np.ndarray) -> np.ndarray:
        """The warp with this linear part that puts the template centre at `xy`."""
        t = np.float32(xy) - linear @ np.float32([self.c, self.c])
        return np.c_[linear, t].astype(np.float32)

    def _ecc(self, gray: np.ndarray, reference: np.ndarray, warp: np.ndarray
             ) -> tuple[float, np.ndarray]:
        """Affine ECC of `reference` onto a crop of `gray` around the warp → (correlation,
        warp); -1 where it does not converge."""
        p = self.p
        r = p.size // 2 + p.pad
        centre = warp @ np.float32([self.c, self.c, 1])
        x0 = int(np.clip(round(float(centre[0])) - r, 0, self.width - 2 * r - 1))
        y0 = int(np.clip(round(float(centre[1])) - r, 0, self.height - 2 * r - 1))
        crop = gray[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]
        for motion in (cv2.MOTION_AFFINE, cv2.MOTION_TRANSLATION):
            local = warp.copy()
            local[:, 2] -= (x0, y0)
            try:
                score, local = cv2.findTransformECC(reference, crop, local, motion,
                                                    _ECC_CRITERIA, None, p.blur)
            except cv2.error:   # no convergence; a translation alone may still converge
                continue
            local[:, 2] += (x0, y0)
            return float(score), local
        return -1.0, warp

    def _plausible(self, warp: np.ndarray) -> bool:
        """A gripper turns and scales; a warp that mirrors, squashes or shears it is a false
        fit (affine ECC can bend background texture into a likeness)."""
        linear = warp[:, :2]
        det = float(np.linalg.det(linear))
        if det <= 0 or not 1 / self.p.max_scale <= np.sqrt(det) <= self.p.max_scale:
            return False
        high, low = np.linalg.svd(linear, compute_uv=False)
        return high <= self.p.max_aspect * low


def _match(gray: np.ndarray, template: np.ndarray, centre: np.ndarray, radius: int
           ) -> tuple[np.ndarray, float]:
    """Best normalized-correlation match of `template` within `radius` of `centre` → (xy with
    a sub-pixel peak, score)."""
    size = template.shape[0]
    half = size // 2
    height, width = gray.shape
    cx, cy = int(round(float(centre[0]))), int(round(float(centre[1])))
    x0 = min(max(cx - radius - half, 0), width - size)
    y0 = min(max(cy - radius - half, 0), height - size)
    x1 = max(min(cx + radius + half + 1, width), x0 + size)
    y1 = max(min(cy + radius + half + 1, height), y0 + size)
    scores = cv2.matchTemplate(gray[y0:y1, x0:x1], template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    return np.array([x0 + half + bx + _peak_offset(scores[by, bx - 1:bx + 2]),
                     y0 + half + by + _peak_offset(scores[by - 1:by + 2, bx])],
                    np.float32), float(best)


def _patch(gray: np.ndarray, xy: np.ndarray, size: int) -> np.ndarray:
    return cv2.getRectSubPix(gray, (size, size), tuple(map(float, xy)))


def _crop(view: np.ndarray, size: int) -> np.ndarray:
    o = (view.shape[0] - size) // 2
    return np.ascontiguousarray(view[o:o + size, o:o + size])


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    return np.float32([[c, -s], [s, c]])


def _turned(view: np.ndarray, angle: float) -> np.ndarray:
    """The view turned by `angle` degrees about its centre."""
    c = (view.shape[0] - 1) / 2
    rotation = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    return cv2.warpAffine(view, rotation, view.shape[::-1], flags=cv2.INTER_LINEAR)


def _halves(gray: np.ndarray, reference: np.ndarray, warp: np.ndarray) -> float:
    """The worst correlation of the four halves (top, bottom, left, right) of the reference
    with the aligned view: low when something covers part of the gripper."""
    size = reference.shape[0]
    h = size // 2 + 1
    view = cv2.warpAffine(gray, warp, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    parts = ((slice(0, h), slice(None)), (slice(size - h, size), slice(None)),
             (slice(None), slice(0, h)), (slice(None), slice(size - h, size)))
    return min(_ncc_arrays(view[a, b], reference[a, b]) for a, b in parts)


def _ncc_arrays(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float32) - a.mean()
    b = b.astype(np.float32) - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denominator if denominator > 0 else 0.0


COTRACKER_HUB = "facebookresearch/co-tracker"


def check_cotracker_source(repo: str | None, trust_code: bool) -> None:
    """CoTracker3 is its repository's Python code: a local clone the user chose runs as it is;
    code torch.hub downloads from GitHub runs only with --trust-cotracker-code."""
    if (repo is None or not os.path.isdir(repo)) and not trust_code:
        raise ValueError(f"--tracker cotracker3 without a local --cotracker-repo DIR would run "
                         f"code downloaded from github.com/{repo or COTRACKER_HUB}: pass "
                         f"--trust-cotracker-code to allow it, or clone the repository and pass "
                         f"--cotracker-repo DIR")


def load_cotracker(repo: str | None, mode: str, trust_code: bool = False) -> object:
    """CoTracker3 (`offline` or `online`) from a local clone of the co-tracker repository or, with
    `trust_code`, from GitHub through torch.hub (weights as the hub entry point fetches them:
    cached, or downloaded)."""
    import torch

    check_cotracker_source(repo, trust_code)
    local = repo is not None and os.path.isdir(repo)
    try:
        return torch.hub.load(repo if local else (repo or COTRACKER_HUB), f"cotracker3_{mode}",
                              source="local" if local else "github", trust_repo=trust_code,
                              skip_validation=True)
    except Exception as exc:
        raise RuntimeError(
            f"cannot load CoTracker3 ({mode}) from {repo or COTRACKER_HUB}: {exc}. Clone "
            f"https://github.com/{COTRACKER_HUB} and pass --cotracker-repo DIR, with the "
            f"checkpoint in the torch hub cache (note: CoTracker code and weights are "
            f"CC-BY-NC-4.0)") from exc


def cotracker_from_hub(repo: str | None, device: object, offline_max_frames: int = 200,
                       trust_code: bool = False) -> "CoTrackerTracker":
    """Both CoTracker3 models loaded, on `device`, in a tracker."""
    offline = load_cotracker(repo, "offline", trust_code).to(device).eval()
    online = load_cotracker(repo, "online", trust_code).to(device).eval()
    return CoTrackerTracker(offline, online, device, offline_max_frames)


class CoTrackerTracker:
    """CoTracker3 on the clip, forwards and backwards from the seed (each a query at frame 0 of
    its half). Halves up to `offline_max_frames` go through the offline model (memory grows with
    length), longer ones through the online model in sliding windows. The hub predictors resize
    to 384×512 internally and return tracks in input pixels."""
    name = "cotracker3"

    def __init__(self, offline: object, online: object, device: object,
                 offline_max_frames: int = 200) -> None:
        self.offline, self.online, self.device = offline, online, device
        self.offline_max_frames = offline_max_frames

    def track(self, frames: np.ndarray, t0: int, xy0: tuple[float, float],
              reseed: Reseed | None = None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from armdata.models.device import autocast

        check_seed(frames, t0, xy0)
        xy = np.full((len(frames), 2), np.nan)
        visible = np.zeros(len(frames), bool)
        xy[t0], visible[t0] = xy0, True
        for order in (range(t0, len(frames)), range(t0, -1, -1)):
            seq = list(order)
            if len(seq) < 2:
                continue
            with torch.inference_mode(), autocast(self.device):
                video = torch.from_numpy(frames[seq]).to(self.device).permute(0, 3, 1, 2)
                video = video[None].float()   # (1, T, 3, H, W) in 0..255
                query = torch.tensor([[[0.0, float(xy0[0]), float(xy0[1])]]], device=self.device)
                if len(seq) <= self.offline_max_frames:
                    tracks, vis = self.offline(video, queries=query)
                else:
                    tracks, vis = self._online(video, query)
            xy[seq] = tracks[0, :len(seq), 0].float().cpu().numpy()
            visible[seq] = vis[0, :len(seq), 0].cpu().numpy() > 0.5
        return xy, visible

    def _online(self, video: "object", query: "object") -> tuple["object", "object"]:
        """Sliding windows of 2·step frames; the clip is padded with its last frame."""
        import torch

        step = int(self.online.step)
        length = video.shape[1]
        pad = (-length) % step + step
        video = torch.cat([video, video[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        self.online(video_chunk=video, is_first_step=True, queries=query)
        tracks = vis = None
        for start in range(0, video.shape[1] - step, step):
            tracks, vis = self.online(video_chunk=video[:, start:start + 2 * step])
        return tracks, vis
