"""Pose training data: keypoints stay on the pixels they mark through letterbox, affine, mosaic and flip,
and a flip renames left and right joints by flip_idx."""

import numpy as np
import pytest
import torch

from foveal.data.detect_dataset import Augment, collate
from foveal.data.detect_transforms import flip_keypoints, warp_keypoints
from foveal.data.detection import ImageAnnotations
from foveal.data.pose_dataset import PoseDataset

# joint: its dot's colour; "tail" is never labelled (v = 0)
COLOURS = {"left_hand": (255, 0, 0), "right_hand": (0, 0, 255), "head": (0, 255, 0)}
FLIP_IDX = [1, 0, 2, 3]  # left_hand <-> right_hand, head and tail keep their names
NO_COLOUR = dict(hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)


def figures(width: int, height: int, centres, crowd=()) -> ImageAnnotations:
    """Stick figures facing the camera, one per centre (x, y): the left hand a red dot on the image's right,
    the right hand a blue dot on its left, the head a green dot above; each joint at its dot's centre."""
    image = np.zeros((height, width, 3), np.uint8)
    boxes, keypoints = [], []
    for cx, cy in centres:
        joints = [(cx + 8, cy), (cx - 8, cy), (cx, cy - 8)]
        for (x, y), colour in zip(joints, COLOURS.values()):
            image[y - 2:y + 3, x - 2:x + 3] = colour
        keypoints.append([[x + 0.5, y + 0.5, 2] for x, y in joints] + [[0, 0, 0]])
        boxes.append([cx - 12, cy - 12, cx + 13, cy + 6])
    n = len(centres)
    return ImageAnnotations("", width, height, np.array(boxes, np.float32).reshape(n, 4), np.zeros(n, np.int64),
                            np.isin(np.arange(n), crowd), image, keypoints=np.array(keypoints, np.float32))


def assert_on_their_dots(image: torch.Tensor, target: dict, names=tuple(COLOURS)):
    """Each labelled joint lies inside the frame, within 1.5 px of a pixel of the colour of joint `names[k]`,
    and inside its own row's box; unlabelled joints are (0, 0, 0)."""
    pixels = image.permute(1, 2, 0).numpy().astype(int)
    keypoints, boxes = target["keypoints"].numpy(), target["boxes"].numpy()
    assert keypoints.shape == (len(boxes), 4, 3) and keypoints.dtype == np.float32
    x, y, v = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2]
    assert ((x[v == 0] == 0) & (y[v == 0] == 0)).all()
    assert ((x[v > 0] >= 0) & (x[v > 0] < pixels.shape[1]) & (y[v > 0] >= 0) & (y[v > 0] < pixels.shape[0])).all()
    for joint, name in enumerate(names):
        channel = int(np.argmax(COLOURS[name]))
        mine = (pixels[..., channel] > 80) & (2 * pixels[..., channel] > pixels.sum(-1))  # (grey padding is not)
        ys, xs = np.nonzero(mine)
        for (px, py, pv), box in zip(keypoints[:, joint], boxes):
            if pv > 0:
                assert np.hypot(xs + 0.5 - px, ys + 0.5 - py).min() <= 1.5, (name, px, py)
                assert box[0] - 1 <= px <= box[2] + 1 and box[1] - 1 <= py <= box[3] + 1  # rows stay with boxes


def test_letterbox_places_keypoints_and_maps_back():
    item = figures(100, 60, [(20, 30), (70, 25)])
    for stride in (0, 32):
        image, target = PoseDataset([item], 64, stride=stride, flip_idx=FLIP_IDX)[0]
        assert_on_their_dots(image, target)
        back = (target["keypoints"][..., :2] - target["pad"]) / target["scale"]
        labelled = target["keypoints"][..., 2] > 0
        assert torch.allclose(back[labelled], torch.from_numpy(item.keypoints[..., :2])[labelled], atol=1e-4)
        assert torch.equal(target["keypoints"][..., 2], torch.from_numpy(item.keypoints[..., 2]))


def test_affine_moves_keypoints_and_drops_what_leaves_the_frame():
    items = [figures(64, 64, [(12, 12), (50, 50), (12, 50)]), figures(56, 48, [(42, 14)])]
    dataset = PoseDataset(items, 64, Augment(mosaic=0.0, scale=0.3, translate=0.4, degrees=30, hflip=0, **NO_COLOUR),
                          flip_idx=FLIP_IDX)
    torch.manual_seed(0)
    lost_joints = lost_rows = 0
    for k in range(16):
        image, target = dataset[k % 2]
        assert_on_their_dots(image, target)
        lost_rows += len(items[k % 2].boxes) - len(target["boxes"])
        lost_joints += 3 * len(target["boxes"]) - int((target["keypoints"][..., 2] > 0).sum())
    assert lost_rows > 0 and lost_joints > 0  # both cases did happen


def test_mosaic_keeps_each_tiles_keypoints_on_its_pixels():
    items = [figures(64, 48, [(16, 20), (46, 30)]), figures(48, 64, [(24, 16), (24, 46)]),
             figures(56, 56, [(28, 28)]), figures(64, 64, [(14, 14), (46, 46)], crowd=[1])]
    dataset = PoseDataset(items, 64, Augment(mosaic=1.0, scale=0.2, translate=0.1, degrees=10, hflip=0, **NO_COLOUR),
                          flip_idx=FLIP_IDX)
    torch.manual_seed(1)
    images, targets = collate([dataset[k % 4] for k in range(12)])
    assert sum(len(t["boxes"]) for t in targets) > 12  # several objects from several tiles
    for image, target in zip(images, targets):
        assert_on_their_dots(image, target)


def test_flip_renames_left_and_right_by_flip_idx():
    item = figures(64, 64, [(20, 30)])
    flip = Augment(mosaic=0.0, scale=0.0, translate=0.0, hflip=1.0, **NO_COLOUR)  # the image itself, mirrored
    image, target = PoseDataset([item], 64, flip, flip_idx=FLIP_IDX)[0]
    assert torch.equal(image, torch.from_numpy(item.pixels[:, ::-1].copy()).permute(2, 0, 1))
    left, right = target["keypoints"][0, :2, 0]
    assert left > right  # the mirrored figure faces the camera too: its left hand is still on the image's right
    # ... where the mirror put the blue dot (the hand that was its right one)
    assert_on_their_dots(image, target, names=["right_hand", "left_hand", "head"])
    assert torch.allclose(target["keypoints"][0, :3, :2], torch.tensor([[64 - 12.5, 30.5], [64 - 28.5, 30.5],
                                                                        [64 - 20.5, 22.5]]))
    image, target = PoseDataset([item], 64, flip)[0]  # flip_idx None: the joints keep their names
    assert_on_their_dots(image, target)
    assert target["keypoints"][0, 0, 0] < target["keypoints"][0, 1, 0]


def test_left_hands_stay_on_the_right_through_every_augmentation():
    # figures face the camera, so a left hand lies right of the right hand in any picture of them, mirrored or
    # not (rotations of 10 degrees keep the order of hands 16 px apart); without flip_idx the flips break it
    items = [figures(64, 64, [(16, 20), (44, 44)]), figures(56, 48, [(40, 20)]), figures(48, 64, [(24, 30)])]
    wrong = {}
    for flip_idx in (FLIP_IDX, None):
        dataset = PoseDataset(items, 64, Augment(mosaic=0.5, scale=0.2, degrees=10), flip_idx=flip_idx)
        torch.manual_seed(0)
        keypoints = torch.cat([dataset[k % 3][1]["keypoints"] for k in range(12)])
        both = (keypoints[:, 0, 2] > 0) & (keypoints[:, 1, 2] > 0)
        wrong[flip_idx is None] = int((keypoints[both, 0, 0] < keypoints[both, 1, 0]).sum())
    assert wrong[False] == 0 and wrong[True] > 0, wrong


def test_crowd_objects_are_left_out_with_their_keypoints():
    item = figures(64, 64, [(16, 20), (44, 44)], crowd=[0])
    image, target = PoseDataset([item], 64, flip_idx=FLIP_IDX)[0]
    assert len(target["boxes"]) == len(target["keypoints"]) == 1
    assert_on_their_dots(image, target)
    assert torch.allclose(target["keypoints"][0, 2, :2], torch.tensor([44.5, 36.5]))  # the second figure's head


def test_same_seed_same_sample():
    items = [figures(64, 64, [(16, 20), (44, 44)]), figures(56, 48, [(40, 20)])]
    dataset = PoseDataset(items, 64, Augment(mosaic=0.5, degrees=10), flip_idx=FLIP_IDX)

    def sample(seed):
        torch.manual_seed(seed)
        return dataset[0]

    (a, ta), (b, tb), (c, tc) = sample(3), sample(3), sample(4)
    assert torch.equal(a, b) and torch.equal(ta["keypoints"], tb["keypoints"])
    assert not torch.equal(a, c)


def test_keypoint_transforms():
    keypoints = np.array([[[10, 10, 2], [50, 10, 1], [0, 0, 0]]], np.float32)
    shifted = warp_keypoints(keypoints, np.array([[1.0, 0, -20], [0, 1, 5]]), 40, 40)
    # inside (v kept, hidden or not), pushed out of the left edge, never labelled (not moved to the shift)
    assert np.array_equal(shifted, [[[0, 0, 0], [30, 15, 1], [0, 0, 0]]])
    flipped = flip_keypoints(keypoints, 64, [1, 0, 2])
    assert np.array_equal(flipped, [[[14, 10, 1], [54, 10, 2], [0, 0, 0]]])
    assert np.array_equal(flip_keypoints(keypoints, 64), [[[54, 10, 2], [14, 10, 1], [0, 0, 0]]])
    assert flip_keypoints(keypoints[:0], 64, [1, 0, 2]).shape == (0, 3, 3)


def test_images_without_objects_and_bad_flip_idx():
    empty = ImageAnnotations("", 64, 64, pixels=np.zeros((64, 64, 3), np.uint8))  # no keypoints array at all
    dataset = PoseDataset([figures(64, 64, [(30, 30)]), empty], 64, Augment(mosaic=0), flip_idx=FLIP_IDX)
    assert dataset[1][1]["keypoints"].shape == (0, 4, 3)
    with pytest.raises(ValueError, match="flip_idx has 3 joints, the keypoints 4"):
        PoseDataset([figures(64, 64, [(30, 30)])], 64, flip_idx=[1, 0, 2])
