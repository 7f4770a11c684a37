"""What the pose data, its loss and its metric share about keypoints: COCO's per-joint OKS sigmas."""

import numpy as np

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
