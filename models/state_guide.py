"""State guide: the arm's own end-effector xyz tells a tracker where to look, for free.

The camera of a robot episode is (nearly always) fixed, so the gripper's pixel position is a
3×4 projection of the state's end-effector xyz (Embodied-CoT fits exactly this to detections).
While tracking, `StateGuide` fits that projection to the positions the tracker has confirmed so
far and predicts the next unsure frame's position; the tracker checks its appearance there before
it asks the (expensive) localizer. After tracking, `refine_with_fit` replaces the confirmed
positions by a whole-episode fit when the fit explains all of them to within tracking noise
(it averages the noise of every frame). Both refuse when the fit is not trustworthy: too few or
too clustered points, a degenerate configuration, or residuals beyond the limits below.
"""
from __future__ import annotations

import numpy as np

from armdata.models.localizers import apply_projection, dlt_projection, fit_projection_ransac

MIN_AFFINE_POINTS = 4      # an affine xyz → pixels map (8 unknowns) needs 4 points
MIN_PROJECTION_POINTS = 8  # a 3×4 projection (11 unknowns) from at least this many
NEAREST = 48               # the fit uses the confirmations nearest in time (a long episode
                           # may nudge the camera)
MIN_SPREAD_PX = 2.0        # positions that barely move cannot tell the map (a lock on a
                           # static thing would fit any state)
PREDICT_RMS_PX = 1.0       # a map that misses its own points by more predicts nothing
# A projection this well fitted, that predicted the confirmations nearest in time from the others
# and is asked inside the range of its points, places the gripper like a localizer would (else
# its prediction only says where to look).
SETTLE_POINTS = 8          # points the validating fit is made from
HOLDOUT = 2                # ... and the nearest confirmations it must predict
HOLDOUT_PX = 0.75          # ... this closely
SETTLE_RMS_PX = 0.5


def _moves(uv: np.ndarray) -> bool:
    return bool(np.ptp(uv, axis=0).max() >= MIN_SPREAD_PX)


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def _within(xyz: np.ndarray, at: np.ndarray, margin: float = 0.1) -> bool:
    """`at` lies inside the extent of the points along each of their principal axes (plus a
    margin): a fit to points on a thin slab says nothing about a point off the slab."""
    centre = xyz.mean(axis=0)
    _, _, axes = np.linalg.svd(xyz - centre, full_matrices=False)
    coords, query = (xyz - centre) @ axes.T, (at - centre) @ axes.T
    low, high = coords.min(axis=0), coords.max(axis=0)
    pad = margin * (high - low)
    return bool(np.all(query >= low - pad) and np.all(query <= high + pad))


class StateGuide:
    """Per-episode predictions of the gripper's pixel position from its state xyz (T, 3),
    fitted to the positions confirmed so far (`seen`)."""

    def __init__(self, xyz: np.ndarray, width: int, height: int) -> None:
        self.xyz = np.asarray(xyz, np.float64)
        self.width, self.height = width, height
        self.confirmed: dict[int, np.ndarray] = {}

    def seen(self, t: int, xy: np.ndarray) -> None:
        self.confirmed[int(t)] = np.asarray(xy, np.float64)

    def predict(self, t: int) -> tuple[np.ndarray, bool] | None:
        """(pixel position at frame t, whether it settles the position), or None when the
        confirmations do not pin the map down or it points outside the image."""
        if len(self.confirmed) < MIN_AFFINE_POINTS or not np.isfinite(self.xyz[t]).all():
            return None
        frames = sorted(self.confirmed, key=lambda k: (abs(k - t), k))[:NEAREST]
        xyz, uv = self.xyz[frames], np.stack([self.confirmed[k] for k in frames])
        if not np.isfinite(xyz).all() or not _moves(uv):
            return None
        at = self.xyz[t]
        projected = self._projection(xyz, uv, at)
        result = projected or self._affine(xyz, uv, at)
        if result is None:
            return None
        point, rms = result
        if not (0 <= point[0] <= self.width - 1 and 0 <= point[1] <= self.height - 1):
            return None
        return point, (projected is not None and rms <= SETTLE_RMS_PX and _within(xyz, at)
                       and self._validated(xyz, uv))

    @staticmethod
    def _validated(xyz: np.ndarray, uv: np.ndarray) -> bool:
        """The projection fitted without the HOLDOUT points nearest in time (first in `xyz`)
        predicts them within HOLDOUT_PX: it extrapolates, not only fits."""
        if len(xyz) < SETTLE_POINTS + HOLDOUT:
            return False
        P = dlt_projection(xyz[HOLDOUT:], uv[HOLDOUT:])
        if P is None:
            return False
        err = np.linalg.norm(apply_projection(P, xyz[:HOLDOUT]) - uv[:HOLDOUT], axis=1)
        return bool(np.all(err <= HOLDOUT_PX))

    @staticmethod
    def _projection(xyz: np.ndarray, uv: np.ndarray, at: np.ndarray
                    ) -> tuple[np.ndarray, float] | None:
        if len(xyz) < MIN_PROJECTION_POINTS:
            return None
        P = dlt_projection(xyz, uv)
        if P is None:
            return None
        rms = _rms(apply_projection(P, xyz), uv)
        point = apply_projection(P, at[None])[0]
        return (point, rms) if rms <= PREDICT_RMS_PX and np.isfinite(point).all() else None

    @staticmethod
    def _affine(xyz: np.ndarray, uv: np.ndarray, at: np.ndarray
                ) -> tuple[np.ndarray, float] | None:
        X = np.c_[xyz, np.ones(len(xyz))]
        if np.linalg.matrix_rank(X, tol=1e-9 * max(1.0, float(np.abs(X).max()))) < 4:
            return None   # the points lie in a plane (or a line): the map is not determined
        A, *_ = np.linalg.lstsq(X, uv, rcond=None)
        rms = _rms(X @ A, uv)
        return (np.r_[at, 1.0] @ A, rms) if rms <= PREDICT_RMS_PX else None


# a whole-episode fit replaces tracked positions only when it explains them this well
REFINE_THRESHOLD_PX = 1.0  # RANSAC inlier distance
REFINE_RMS_PX = 0.5        # inlier residual RMS: tracking noise, not a misfit
REFINE_MIN_POINTS = 10
REFINE_MIN_INLIERS = 0.9   # share of the confirmed positions the fit must explain
# With ≥ 90 % inliers a minimal sample of 6 is all inliers with probability ≥ 0.53, so 30 samples
# miss an acceptable fit with probability < 1e-9 (RANSAC's default 500 cost a refused episode
# ~0.2 s, more than tracking it).
REFINE_SAMPLES = 30


def refine_with_fit(xyz: np.ndarray, xy: np.ndarray, visible: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions, replaced (T,) bool) with the visible positions the fit explains replaced by
    the fit, or None when it does not explain them well enough (then the tracked positions
    stand). A fit is accepted only with ≥ 10 visible frames that move in the image, ≥ 90 % of
    them within 1 px of it (no position moves more) and an inlier RMS ≤ 0.5 px."""
    xyz, xy = np.asarray(xyz, np.float64), np.asarray(xy, np.float64)
    use = np.asarray(visible, bool) & np.isfinite(xy).all(axis=1) & np.isfinite(xyz).all(axis=1)
    if use.sum() < REFINE_MIN_POINTS or not _moves(xy[use]):
        return None
    P, inliers = fit_projection_ransac(xyz[use], xy[use], REFINE_THRESHOLD_PX, REFINE_SAMPLES)
    if P is None or inliers.mean() < REFINE_MIN_INLIERS:
        return None
    fitted = apply_projection(P, xyz[use])
    if _rms(fitted[inliers], xy[use][inliers]) > REFINE_RMS_PX:
        return None
    replaced = np.zeros(len(xy), bool)
    replaced[np.flatnonzero(use)[inliers]] = True
    out = xy.copy()
    out[replaced] = fitted[inliers]
    return out, replaced
