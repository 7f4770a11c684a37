"""The embedded tracking videos: shapes_video (shapes crossing, hiding, entering, leaving) and polyps_video
(a panning scope), their ids, the detect data made of them and the mp4 + MOTChallenge gt writer."""

import cv2
import numpy as np
import pytest

from foveal.data.synthetic import MIN_PIXELS, MIN_VISIBLE_FRACTION, SHAPE_CLASSES, mask_box
from foveal.data.videos import (MAX_SPEED, MIN_IN_VIEW, moving_scene, polyps_video, shapes_video, tracking_sequences,
                                write_track_video)
from foveal.errors import FovealError
from foveal.tasks.detect.task import load_detect_data


@pytest.fixture(scope="module")
def shapes():
    return tracking_sequences("shapes_video")


def gap(a, b) -> float:
    """The distance between two xyxy boxes (0 when they touch or overlap)."""
    dx = max(a[0] - b[2], b[0] - a[2], 0)
    dy = max(a[1] - b[3], b[1] - a[3], 0)
    return float(np.hypot(dx, dy))


def overlap(a, b) -> float:
    return max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)


def tracks(sequence) -> dict[int, list]:
    """id -> [(frame, box, class), ...] in frame order."""
    found = {}
    for t, truth in enumerate(sequence.gt):
        for i, box, c in zip(truth.ids.tolist(), truth.boxes.tolist(), truth.classes.tolist()):
            found.setdefault(i, []).append((t, box, c))
    return found


def test_same_seed_same_video_and_sequences_independent_of_count():
    first, again = shapes_video(2, frames=8, size=(64, 80), seed=5), shapes_video(2, frames=8, size=(64, 80), seed=5)
    for a, b in zip(first, again):
        assert all(x.tobytes() == y.tobytes() for x, y in zip(a.frames, b.frames))
        assert all(np.array_equal(x.boxes, y.boxes) and np.array_equal(x.ids, y.ids) for x, y in zip(a.gt, b.gt))
    alone = shapes_video(1, frames=8, size=(64, 80), seed=5)[0]
    assert all(x.tobytes() == y.tobytes() for x, y in zip(alone.frames, first[0].frames))
    other = shapes_video(1, frames=8, size=(64, 80), seed=6)[0]
    assert other.frames[0].tobytes() != first[0].frames[0].tobytes()


def test_the_embedded_set(shapes):
    assert [s.name for s in shapes] == ["shapes-01", "shapes-02", "shapes-03", "shapes-04"]
    for s in shapes:
        assert (s.width, s.height, s.fps, len(s.frames), len(s.gt)) == (320, 256, 12.0, 60, 60)
        assert s.classes == list(SHAPE_CLASSES) and s.frames[0].shape == (256, 320, 3)
        ids = sorted(tracks(s))
        assert ids == list(range(1, len(ids) + 1))  # 1.., numbered as they first appear
        assert all(len(set(t.ids.tolist())) == len(t.ids) for t in s.gt)
        # the objects are as large as the `shapes` scenes' (26-192 px across at 320 px)
        sides = np.concatenate([t.boxes[:, 2:] - t.boxes[:, :2] for t in s.gt]).max(axis=1)
        assert sides.max() <= 110 and np.median(sides) >= 26
    with pytest.raises(FovealError, match="shapes_video, polyps_video"):
        tracking_sequences("shape_video")


def test_ids_move_continuously_and_keep_their_class(shapes):
    max_step = MAX_SPEED * 256 + 1
    for s in shapes:
        for track in tracks(s).values():
            assert len({c for _, _, c in track}) == 1
            for (t0, a, _), (t1, b, _) in zip(track, track[1:]):
                assert gap(a, b) <= max_step * (t1 - t0), (s.name, t0, a, b)


def test_objects_cross_enter_and_leave(shapes):
    crossings = sum(overlap(a, b) > 0 for s in shapes for t in s.gt for i, a in enumerate(t.boxes.tolist())
                    for b in t.boxes.tolist()[i + 1:])
    assert crossings > 20
    for s in shapes:
        found = tracks(s)
        on_edge = lambda box: box[0] == 0 or box[1] == 0 or box[2] == s.width or box[3] == s.height  # noqa: E731
        entering = [i for i, track in found.items() if track[0][0] > 0 and on_edge(track[0][1])]
        leaving = [i for i, track in found.items() if track[-1][0] < len(s.gt) - 1 and on_edge(track[-1][1])]
        assert entering and leaving, s.name
    speeds = [gap([a[0], a[1], a[0], a[1]], [b[0], b[1], b[0], b[1]])
              for s in shapes for track in tracks(s).values() for (_, a, _), (_, b, _) in zip(track, track[1:])]
    assert min(speeds) < 3 and max(speeds) > 15  # some slow, some fast


def test_ground_truth_is_the_visible_pixels_by_the_shapes_rule(shapes):
    """Re-paint each frame from the scene's movers and apply the rule here: the same pixels, the same
    objects kept and left out, boxes the bounds of the visible pixels, one id per mover throughout."""
    left_out_hidden = 0
    for index, s in enumerate(shapes):
        scene = moving_scene(0, index, 60, (256, 320))
        id_of = {}
        for t in range(0, 60, 3):
            image, owner = scene.background.copy(), np.full((256, 320), -1)
            for k, mover in enumerate(scene.movers):
                mask, window = mover.mask(t, 256, 320)
                image[window][mask], owner[window][mask] = scene.colours[k], k
            assert image.tobytes() == s.frames[t].tobytes()
            expected = {}
            for k, mover in enumerate(scene.movers):
                whole = np.zeros((256, 320), bool)
                mask, window = mover.mask(t, 256, 320)
                whole[window] = mask
                visible = (owner == k).sum()
                in_view = whole.sum() >= MIN_IN_VIEW * mover.area()
                if in_view and visible >= MIN_PIXELS and visible >= MIN_VISIBLE_FRACTION * whole.sum():
                    expected[k] = mask_box(owner == k)
                elif in_view and whole.sum():
                    left_out_hidden += 1
            truth = s.gt[t]
            assert len(truth.ids) == len(expected)
            for k, box in expected.items():
                assert box in truth.boxes.tolist(), (s.name, t, k)
                row = truth.boxes.tolist().index(box)
                assert truth.classes[row] == scene.movers[k].label
                assert id_of.setdefault(k, truth.ids[row]) == truth.ids[row]  # the same id as before
        assert len(set(id_of.values())) == len(id_of)  # one mover, one id
    assert left_out_hidden > 0  # the rule was put to work


def test_polyps_video_ids_hold_while_the_whole_frame_moves():
    videos = polyps_video(sequences=1, frames=16, size=(128, 160))
    assert [v.name for v in videos] == ["polyps-01"] and videos[0].classes == ["polyp"]
    video = videos[0]
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in video.frames]
    shifts = [np.hypot(*cv2.phaseCorrelate(a, b)[0]) for a, b in zip(grey, grey[1:])]
    assert min(shifts) > 0.5  # the camera moves every frame
    found = tracks(video)
    assert found and all(1 <= i <= 5 for i in found)  # the polyp's index on the mucosa + 1
    assert sum(len(track) for track in found.values()) > len(video.frames)
    for track in found.values():
        for (t0, a, _), (t1, b, _) in zip(track, track[1:]):
            assert t1 == t0 + 1 and overlap(a, b) > 0  # seen without gaps, a little further each frame


def test_shapes_video_is_detect_data(shapes):
    data = load_detect_data("shapes_video", strict=True, val_fraction=0.2)
    assert data.classes == list(SHAPE_CLASSES)
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [240, 80, 80]
    item, frame = data.splits["test"][1], shapes[0]
    assert item.pixels is frame.frames[3] and np.array_equal(item.boxes, frame.gt[3].boxes)
    assert (item.width, item.height) == (320, 256) and item.pixels.shape == (256, 320, 3)
    tracked = {f.tobytes() for s in shapes for f in s.frames[::3]}
    assert not any(item.pixels.tobytes() in tracked for item in data.splits["train"])  # sequences of its own


def test_write_track_video(tmp_path):
    sequence = shapes_video(1, frames=5, size=(64, 96), seed=2)[0]
    write_track_video(sequence, tmp_path / "shapes-01.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes-01.mp4", "shapes-01.txt"]
    capture = cv2.VideoCapture(str(tmp_path / "shapes-01.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 5 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 96
    lines = (tmp_path / "shapes-01.txt").read_text().splitlines()
    assert len(lines) == sum(len(t.ids) for t in sequence.gt)
    frame, i, x, y, w, h, _, c, _ = (float(v) for v in lines[0].split(","))
    x1, y1, x2, y2 = sequence.gt[0].boxes[0]
    assert (frame, i, x, y, w, h, c) == (1, sequence.gt[0].ids[0], x1 + 1, y1 + 1, x2 - x1, y2 - y1,
                                         sequence.gt[0].classes[0] + 1)
