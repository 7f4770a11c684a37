"""The embedded `stickmen` pose data: deterministic, keypoints inside their boxes, v right for covered and
outside joints, left and right told apart by flip_idx and by colour."""

import numpy as np
import pytest

from foveal.data.stickmen import (FLIP_IDX, JOINT_NAMES, SKELETON, STICKMEN_LAYOUT, draw_stickmen, random_pose,
                                  stickmen_pose_data)


@pytest.fixture(scope="module")
def data():
    return stickmen_pose_data(imgsz=128, n_train=40, n_val=10, n_test=10)


def test_the_same_set_every_call(data):
    again = stickmen_pose_data(imgsz=128, n_train=40, n_val=10, n_test=10)
    for split in ("train", "val", "test"):
        for a, b in zip(data.splits[split], again.splits[split], strict=True):
            assert a.pixels.tobytes() == b.pixels.tobytes()
            assert a.boxes.tobytes() == b.boxes.tobytes() and a.keypoints.tobytes() == b.keypoints.tobytes()
    assert data.splits["train"][0].pixels.tobytes() != data.splits["val"][0].pixels.tobytes()


def test_default_sizes_and_layout():
    data = stickmen_pose_data()
    assert {split: len(items) for split, items in data.splits.items()} == {"train": 300, "val": 60, "test": 60}
    assert data.classes == ["person"] and data.keypoints is STICKMEN_LAYOUT and data.keypoints.count == 13
    items = [item for items in data.splits.values() for item in items]
    assert {len(item.boxes) for item in items} == {1, 2, 3}
    heights = np.concatenate([item.boxes[:, 3] - item.boxes[:, 1] for item in items]) / 256
    assert heights.min() < 0.2 and heights.max() > 0.7
    visibility = np.concatenate([item.keypoints[..., 2].ravel() for item in items])
    assert set(np.unique(visibility).tolist()) == {0, 1, 2}  # some joints hidden, some outside
    assert (visibility == 2).mean() > 0.8


def test_labelled_joints_lie_inside_their_boxes(data):
    for item in (item for items in data.splits.values() for item in items):
        assert item.keypoints.shape == (len(item.boxes), 13, 3) and item.keypoints.dtype == np.float32
        assert (item.width, item.height) == (128, 128) and item.pixels.shape == (128, 128, 3)
        assert (item.boxes[:, :2] >= 0).all() and (item.boxes[:, 2:] <= 128).all()
        assert (item.boxes[:, 2:] > item.boxes[:, :2]).all() and (item.labels == 0).all()
        for box, keypoints in zip(item.boxes, item.keypoints):
            labelled = keypoints[keypoints[:, 2] > 0, :2]
            assert ((labelled >= box[:2]) & (labelled <= box[2:])).all()
            assert (keypoints[keypoints[:, 2] == 0, :2] == 0).all()
            assert (keypoints[:, 2] == 2).sum() >= 4


def upright(height: float, pelvis) -> np.ndarray:
    """A figure drawn from a fixed seed, moved so that its pelvis is at `pelvis`."""
    return random_pose(np.random.default_rng(5), height, pelvis)


def test_covered_joints_are_hidden_and_outside_ones_unlabelled():
    image = np.full((100, 100, 3), 128, np.uint8)
    behind = upright(60, (30, 50))
    # a second, larger figure whose left shoulder lies on the first figure's left shoulder
    front = upright(80, (0, 0))
    front += behind[1] - front[1]
    # a third one half outside the image: its pelvis on the left edge
    cut = upright(40, (2, 90))
    boxes, keypoints = draw_stickmen(image, [(behind, 60), (front, 80), (cut, 40)], [np.array([200, 40, 40])] * 3)
    assert keypoints[0, 1, 2] == 1  # covered by the figure in front
    assert (keypoints[1, :, 2] > 0).sum() == ((front >= 0) & (front < 100)).all(1).sum()
    assert keypoints[1, 1, 2] == 2
    outside = (cut[:, 0] < 0) | (cut[:, 1] >= 100)
    assert outside.any() and (~outside).any()
    assert (keypoints[2, outside] == 0).all()
    assert (keypoints[2, ~outside, 2] == 2).all()
    np.testing.assert_allclose(keypoints[2, ~outside, :2], cut[~outside], atol=1e-4)
    assert boxes[2, 0] == 0 and boxes[2, 3] == 100  # cut by the image's edges
    assert (image != 128).any(-1)[int(behind[0, 1]), int(behind[0, 0])]  # the head is drawn


def test_flip_idx_swaps_left_and_right_names():
    assert sorted(FLIP_IDX) == list(range(13)) and STICKMEN_LAYOUT.flip_idx == list(FLIP_IDX)
    for k, name in enumerate(JOINT_NAMES):
        mirrored = name.replace("left", "#").replace("right", "left").replace("#", "right")
        assert JOINT_NAMES[FLIP_IDX[k]] == mirrored
    assert all(0 <= a < 13 and 0 <= b < 13 for a, b in SKELETON)
    assert sorted({k for limb in SKELETON for k in limb}) == list(range(13))  # every joint on a limb


def test_left_limbs_are_lighter_than_right_ones():
    image = np.full((120, 120, 3), 0, np.uint8)
    joints = upright(100, (60, 60))
    draw_stickmen(image, [(joints, 100)], [np.array([120, 60, 180])])
    # the middle of each forearm: wrist and elbow of the left side (5, 3), of the right side (6, 4)
    left, right = ((joints[wrist] + joints[elbow]) / 2 for wrist, elbow in ((5, 3), (6, 4)))
    assert image[int(left[1]), int(left[0])].sum() > image[int(right[1]), int(right[0])].sum() + 150
    assert joints[1, 0] > joints[2, 0]  # facing the viewer: the person's left on the image's right
