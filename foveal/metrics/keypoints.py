"""Single-object landmark metrics: PCK@alpha and normalised mean error (NME).

For data with one object per image (faces, hands, a landmark folder), where there is nothing to
detect and COCO's OKS AP does not apply. A joint's error is its Euclidean distance to the truth
divided by the image's normaliser: by default the longer side of the object's box; given a pair of
joints, their true distance (the inter-ocular distance of face landmarks, the head segment of
PCKh-like use). PCK@alpha is the fraction of joints with error < alpha; NME the mean error. Only
labelled joints (v > 0) count, pooled over every image (not averaged per image first).
"""

from dataclasses import dataclass

import numpy as np
import torch

from foveal.errors import FovealError


@dataclass
class LandmarkEval:
    pck: float  # fraction of labelled joints within alpha x the normaliser
    nme: float  # mean over labelled joints of distance / normaliser
    per_joint_pck: dict[str, float]  # per joint name; -1 for a joint never labelled
    per_joint_nme: dict[str, float]
    alpha: float
    count: int  # labelled joints scored


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, np.float64)


def _joint_index(joint: int | str, names: list[str]) -> int:
    if isinstance(joint, str):
        if joint not in names:
            raise FovealError(f"normalise_by names joint '{joint}', which is not one of {', '.join(names)}")
        return names.index(joint)
    if not 0 <= joint < len(names):
        raise FovealError(f"normalise_by names joint {joint}, outside 0..{len(names) - 1} for {len(names)} joints")
    return int(joint)


def _normalisers(truth: np.ndarray, boxes, normalise_by, names: list[str]) -> np.ndarray:
    """(N,) the per-image scale errors are divided by."""
    if normalise_by is None:
        if boxes is None:
            raise FovealError("landmark metrics need the objects' boxes (N, 4) or normalise_by= a pair of joints")
        boxes = _numpy(boxes)
        if boxes.shape != (len(truth), 4):
            raise FovealError(f"boxes has shape {boxes.shape}, expected ({len(truth)}, 4): one xyxy box per image")
        scale = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        what = "box's longer side"
    else:
        if len(normalise_by) != 2:
            raise FovealError(f"normalise_by must name two joints; got {normalise_by}")
        a, b = (_joint_index(joint, names) for joint in normalise_by)
        unlabelled = np.flatnonzero((truth[:, a, 2] <= 0) | (truth[:, b, 2] <= 0))
        if len(unlabelled):
            raise FovealError(f"image {unlabelled[0]} does not label both normalising joints {names[a]} and "
                              f"{names[b]}, so its scale is unknown")
        scale = np.linalg.norm(truth[:, a, :2] - truth[:, b, :2], axis=1)
        what = f"{names[a]}-{names[b]} distance"
    bad = np.flatnonzero(~(scale > 0))
    if len(bad):
        raise FovealError(f"image {bad[0]}'s normaliser, its {what}, is {scale[bad[0]]:g}; it must be positive")
    return scale


def landmark_metrics(truth, predicted, boxes=None, alpha: float = 0.2, normalise_by=None,
                     names: list[str] | None = None) -> LandmarkEval:
    """PCK@alpha and NME of `predicted` landmarks against `truth`, one object per image.

    truth (N, K, 3): x, y pixels and visibility v (0 not labelled, so not scored); predicted (N, K, 2 or
    more): x, y first (a score column is ignored); torch or numpy. The normaliser is the longer side of
    boxes[i] (N, 4) xyxy, or with normalise_by = (joint, joint), names or indices, the true distance
    between those two joints in each image (both must be labelled). names: the K joint names, for
    per_joint_* keys and normalise_by; default "0".."K-1".
    """
    truth, predicted = _numpy(truth), _numpy(predicted)
    if truth.ndim != 3 or truth.shape[2] != 3:
        raise FovealError(f"truth has shape {truth.shape}, expected (N, K, 3): x, y and visibility of each joint")
    if predicted.ndim != 3 or predicted.shape[:2] != truth.shape[:2] or predicted.shape[2] < 2:
        raise FovealError(f"predicted has shape {predicted.shape}, expected ({len(truth)}, {truth.shape[1]}, 2 or 3) "
                          "as the truth: x, y (and a score) of each joint")
    names = list(names) if names is not None else [str(k) for k in range(truth.shape[1])]
    if len(names) != truth.shape[1]:
        raise FovealError(f"{len(names)} joint names for {truth.shape[1]} keypoints; give one per joint")
    if not alpha > 0:
        raise FovealError(f"alpha must be positive; got {alpha}")
    scale = _normalisers(truth, boxes, normalise_by, names)
    error = np.linalg.norm(predicted[:, :, :2] - truth[:, :, :2], axis=2) / scale[:, None]  # (N, K)
    labelled = truth[:, :, 2] > 0
    correct = error < alpha
    per_joint_count = labelled.sum(0)
    per_joint_pck = np.where(per_joint_count > 0, (correct & labelled).sum(0) / np.maximum(per_joint_count, 1), -1)
    per_joint_nme = np.where(per_joint_count > 0, np.where(labelled, error, 0).sum(0) / np.maximum(per_joint_count, 1),
                             -1)
    count = int(labelled.sum())
    return LandmarkEval(
        pck=float(correct[labelled].mean()) if count else -1.0, nme=float(error[labelled].mean()) if count else -1.0,
        per_joint_pck=dict(zip(names, per_joint_pck.tolist())), per_joint_nme=dict(zip(names, per_joint_nme.tolist())),
        alpha=float(alpha), count=count)
