"""yolo_*-pose: the eval keypoints' contract, the keypoint and visibility losses by hand, fused branches,
starting from a detector's weights, and learning: overfit on a few stick figures, its joints land far closer
than a guess of every joint at its box's centre."""

import copy
import functools
import math

import cv2
import numpy as np
import pytest
import torch

import foveal
from foveal.errors import FovealError
from foveal.models.detect.yolo_loss import Assignment
from foveal.models.pose.yolo_pose import YOLOPoseLoss, keypoint_loss, positive_keypoints
from foveal.ops.keypoints import COCO_SIGMAS, default_sigmas
from tests.conftest import overfit

JOINTS = ("head", "left_hand", "right_hand", "left_foot", "right_foot")
COLOURS = ((255, 60, 60), (60, 255, 60), (60, 60, 255), (255, 255, 60), (255, 60, 255))  # one per joint
IMGSZ = 64
STEPS = 100  # joint error 0.19 of the box size at 50 steps, 0.03 at 100 (the centre guess: 0.44)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only waits


def test_eval_keypoints_are_in_the_image_with_visibility_probabilities():
    torch.manual_seed(0)
    model = foveal.create_model("yolo_n-pose", "pose", num_classes=2, num_keypoints=5, imgsz=64, max_det=7).eval()
    with torch.no_grad():
        for branch in model.keypoint_branches:  # joints thrown far outside the image: clipped back to its edges
            branch[-1].bias.fill_(30.0)
        outputs = model(torch.rand(2, 3, 64, 96))
    for out in outputs:
        assert set(out) == {"boxes", "scores", "labels", "keypoints"}
        assert len(out["boxes"]) == 7 and out["keypoints"].shape == (7, 5, 3)
        assert out["keypoints"].dtype == torch.float32
        x, y, visibility = out["keypoints"].unbind(-1)
        assert x.min() >= 0 and x.max() <= 96 and y.min() >= 0 and y.max() <= 64
        assert (x == 96).any() and (y == 64).any()  # clipped, not dropped
        assert visibility.min() >= 0 and visibility.max() <= 1
    model.conf = 1.0  # nothing found: no keypoints, still (0, K, 3)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64))[0]["keypoints"].shape == (0, 5, 3)


def test_untrained_joints_start_at_their_anchor_points():
    model = foveal.create_model("yolo_n-pose", "pose", num_classes=1, num_keypoints=3, imgsz=64).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        features = model.features(images)
        _, _, _, points, strides = model.decode(model.head(features))
        keypoints = model.keypoints(features, points, strides)
    assert keypoints.shape == (1, 64 + 16 + 4, 3, 3)
    assert (keypoints[0, :, :, :2] - points[:, None]).abs().max() < 2.0  # small initial weights: near the anchors


def test_sigmas_default_to_cocos_for_17_joints_and_one_over_k_otherwise():
    assert default_sigmas(17) == COCO_SIGMAS and len(COCO_SIGMAS) == 17
    assert default_sigmas(4) == (0.25,) * 4
    model = foveal.create_model("yolo_n-pose", "pose", num_classes=1, num_keypoints=2, sigmas=[0.1, 0.2])
    assert model.sigmas.tolist() == pytest.approx([0.1, 0.2])
    with pytest.raises(FovealError, match="sigmas: expected 3 positive values"):
        foveal.create_model("yolo_n-pose", "pose", num_classes=1, num_keypoints=3, sigmas=[0.1, 0.2])


def test_keypoint_loss_is_one_minus_oks_over_the_labelled_joints():
    # object 1: a 10 x 10 box, joint 0 off by (3, 4) with sigma 0.25: 1 - exp(-25 / (2 * 100 * 0.5^2)); its
    # joint 1, unlabelled, counts nowhere however wrong. Object 2: a 20 x 5 box, joint 0 exact, joint 1 off by
    # 6 with sigma 0.5: 1 - exp(-36 / (2 * 100 * 1^2)), averaged over its two joints. Object 3 has no labelled
    # joint: not in the mean.
    predicted = torch.tensor([[[13.0, 14.0], [500.0, -500.0]], [[1.0, 2.0], [7.0, 0.0]], [[9.0, 9.0], [9.0, 9.0]]])
    truth = torch.tensor([[[10.0, 10.0, 2.0], [0.0, 0.0, 0.0]], [[1.0, 2.0, 1.0], [1.0, 0.0, 2.0]],
                          [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    areas = torch.tensor([100.0, 100.0, 50.0])
    sigmas = torch.tensor([0.25, 0.5])
    first = 1 - math.exp(-25 / 50)
    second = (0 + 1 - math.exp(-36 / 200)) / 2
    assert keypoint_loss(predicted, truth, areas, sigmas).item() == pytest.approx((first + second) / 2, rel=1e-6)
    assert keypoint_loss(truth[..., :2], truth, areas, sigmas).item() == 0  # exact joints: no loss


def test_the_pose_loss_takes_each_positives_own_ground_truth_and_weighs_both_terms():
    # two images, four anchors each; positives: image 0's anchor 1 (its object 1) and anchor 3 (object 0),
    # image 1's anchor 2 (object 0). Visibility logits 0 everywhere but ln 3 on image 0's anchor 3, joint 0.
    owners = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]])
    foreground = torch.tensor([[False, True, False, True], [False, False, True, False]])
    boxes = torch.zeros(2, 4, 4)
    boxes[0, 1] = torch.tensor([0.0, 0.0, 10.0, 10.0])  # area 100
    boxes[0, 3] = torch.tensor([0.0, 0.0, 20.0, 20.0])  # area 400
    boxes[1, 2] = torch.tensor([0.0, 0.0, 10.0, 20.0])  # area 200
    assignment = Assignment(foreground, boxes, torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4, 1), owners)
    targets = [{"keypoints": torch.tensor([[[5.0, 5.0, 2.0]], [[2.0, 2.0, 1.0]]])},
               {"keypoints": torch.tensor([[[1.0, 1.0, 0.0]]])}]
    assert positive_keypoints(assignment, targets, "cpu").tolist() == [[[2.0, 2.0, 1.0]], [[5.0, 5.0, 2.0]],
                                                                        [[1.0, 1.0, 0.0]]]
    keypoints = torch.zeros(2, 4, 1, 3)
    keypoints[0, 1, 0, :2] = torch.tensor([2.0, 4.0])  # 2 px off its object 1 (area 100)
    keypoints[0, 3, 0, :2] = torch.tensor([5.0, 5.0])  # on its object 0
    keypoints[0, 3, 0, 2] = math.log(3)  # p = 0.75 on a labelled joint

    class FixedAssignment(YOLOPoseLoss):
        def detection_loss(self, *args):
            return {}, assignment

    sigma = 0.1
    losses = FixedAssignment()(None, None, None, None, None, targets, keypoints, torch.tensor([sigma]))
    oks_term = 1 - math.exp(-4 / (2 * 100 * (2 * sigma) ** 2))
    assert losses["keypoint"].item() == pytest.approx(12.0 * (oks_term + 0) / 2, rel=1e-6)  # image 1's: unlabelled
    # BCE against labelled: -ln(0.5) for the labelled joint at logit 0 and for the unlabelled one, -ln(0.75)
    assert losses["visibility"].item() == pytest.approx((2 * math.log(2) - math.log(0.75)) / 3, rel=1e-6)


def test_fused_branches_compute_the_same_keypoints():
    torch.manual_seed(0)
    model = foveal.create_model("yolo_n-pose", "pose", num_classes=1, num_keypoints=4, imgsz=64)
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 50.0]]), "labels": torch.tensor([0]),
              "keypoints": torch.rand(1, 4, 3) * 40}
    with torch.no_grad():  # BatchNorm statistics and keypoint weights away from their initial values
        model.train()(torch.rand(2, 3, 64, 64), [target] * 2)
        for branch in model.keypoint_branches:
            branch[-1].weight.normal_(std=0.1)
    model.eval()
    fused = copy.deepcopy(model).fuse()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        mine, theirs = model.features(images), fused.features(images)
        _, _, _, points, strides = model.decode(model.head(mine))
        torch.testing.assert_close(fused.keypoints(theirs, points, strides), model.keypoints(mine, points, strides),
                                   rtol=1e-4, atol=1e-3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())


def stick_figures(count: int, seed: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """`count` IMGSZ-pixel images of one or two stick figures on grey noise: a white torso line, white limbs
    to the head, hands and feet, each drawn as a dot of its own colour. Returns (count, 3, H, W) images in
    [0, 1] and targets {boxes, labels, keypoints (N, 5, 3)}, every joint visible."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for index in range(count):
        image = rng.integers(60, 120, (IMGSZ, IMGSZ, 3), dtype=np.uint8)
        figures = 1 + index % 2
        boxes, keypoints = [], []
        for figure in range(figures):
            size = rng.uniform(22, 30)
            centre = np.array([rng.uniform(size / 2 + 2, IMGSZ - size / 2 - 2) if figures == 1 else
                               (figure + 0.5) * IMGSZ / 2, rng.uniform(size / 2 + 2, IMGSZ - size / 2 - 2)])
            neck, hip = centre + [0, -0.25 * size], centre + [0, 0.2 * size]
            joints = np.array([neck + [rng.uniform(-2, 2), -0.2 * size],  # head
                               neck + [-0.4 * size, rng.uniform(-0.15, 0.2) * size],  # left hand
                               neck + [0.4 * size, rng.uniform(-0.15, 0.2) * size],  # right hand
                               hip + [-rng.uniform(0.1, 0.3) * size, 0.3 * size],  # left foot
                               hip + [rng.uniform(0.1, 0.3) * size, 0.3 * size]])  # right foot
            cv2.line(image, tuple(neck.astype(int)), tuple(hip.astype(int)), (255, 255, 255), 2)
            for joint, colour in zip(joints, COLOURS):
                cv2.line(image, tuple((neck if joint[1] < centre[1] else hip).astype(int)), tuple(joint.astype(int)),
                         (255, 255, 255), 1)
                cv2.circle(image, tuple(joint.astype(int)), 2, colour, -1)
            boxes.append([*(joints.min(0) - 3), *(joints.max(0) + 3)])
            keypoints.append(np.concatenate([joints, np.full((5, 1), 2.0)], 1))
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.zeros(figures, dtype=torch.long),
                        "keypoints": torch.tensor(np.array(keypoints), dtype=torch.float32)})
    return torch.stack(images), targets


@functools.lru_cache(maxsize=1)
def overfit_model():
    """A yolo_n-pose trained STEPS steps on 4 stick-figure images (with its images and targets); shared with
    tests/engine/test_export_yolo_pose.py, which exports it."""
    torch.manual_seed(0)
    images, targets = stick_figures(4)
    model = foveal.create_model("yolo_n-pose", "pose", num_classes=1, num_keypoints=len(JOINTS), imgsz=IMGSZ)
    overfit(model, images, targets, STEPS)
    return model.eval(), images, targets


def relative_errors(found: list[dict], targets: list[dict]) -> tuple[float, float]:
    """Mean joint error of the detections, over sqrt(box area), and of every joint guessed at its box's centre.
    Each object is read from the detection overlapping its box most."""
    from torchvision.ops import box_iou

    ours, centre = [], []
    for out, target in zip(found, targets):
        best = box_iou(target["boxes"], out["boxes"]).argmax(1)
        boxes, truth = target["boxes"], target["keypoints"][..., :2]
        scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()[:, None]
        middle = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
        ours.append(((out["keypoints"][best, :, :2] - truth).norm(dim=-1) / scale).flatten())
        centre.append(((middle - truth).norm(dim=-1) / scale).flatten())
    return torch.cat(ours).mean().item(), torch.cat(centre).mean().item()


def test_overfit_on_stick_figures_puts_the_joints_far_closer_than_the_box_centre():
    model, images, targets = overfit_model()
    model.conf = 0.1
    with torch.no_grad():
        found = model(images)
    assert all(len(out["boxes"]) >= len(target["boxes"]) for out, target in zip(found, targets))
    ours, centre = relative_errors(found, targets)
    assert centre > 0.3  # the guess is poor: joints lie far from the figure's middle
    assert ours < 0.2 * centre, (ours, centre)  # without the keypoint loss: 0.49 vs 0.44
    # visibility: every joint of these figures is labelled, the model learned to say so
    assert min(out["keypoints"][0, :, 2].min().item() for out in found) > 0.7
