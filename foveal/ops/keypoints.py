"""What the pose data, its loss and its metric share about keypoints: COCO's per-joint OKS sigmas."""

import numpy as np
import torch

# COCO's per-joint OKS sigmas for its 17 person keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles): how far annotators disagree on each, as a fraction of the person's size. Computed as
# pycocotools does (x / 10: not always the float64 of the written decimal), so OKS equals COCOeval's to 1e-9.
COCO_SIGMAS = tuple((np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87,
                               .89, .89]) / 10.0).tolist())


def default_sigmas(num_keypoints: int) -> tuple[float, ...]:
    """COCO's sigmas for 17 joints (COCO's people); for any other skeleton the same 1/K for every joint
    (Ultralytics' rule for the loss and the metric: 0.06-0.11 for 9-17 joints, COCO's range, looser for a
    few landmarks). Data that knows its joints' sigmas says so (KeypointLayout.sigmas, kpt_sigmas=)."""
    if num_keypoints == len(COCO_SIGMAS):
        return COCO_SIGMAS
    return (1 / num_keypoints,) * num_keypoints


def unletterbox_keypoints(keypoints: torch.Tensor, scale: float, pad, height: int, width: int) -> torch.Tensor:
    """(N, K, 3) joints (x, y, score) of a letterboxed image (p' = p * scale + pad) back in the original image's
    pixels, clipped to its height x width as unletterbox_boxes clips boxes; the scores as they are."""
    xy = (keypoints[..., :2].float() - keypoints.new_tensor([float(pad[0]), float(pad[1])])) / float(scale)
    xy = torch.stack([xy[..., 0].clamp(0, width), xy[..., 1].clamp(0, height)], -1)
    return torch.cat([xy, keypoints[..., 2:].float()], -1)
