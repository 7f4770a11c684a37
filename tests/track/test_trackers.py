"""ByteTrack and BoT-SORT on made-up detections whose true identities are known."""

from collections import defaultdict

import cv2
import numpy as np
import pytest

from foveal.errors import FovealError
from foveal.ops.boxes import box_iou_numpy
from foveal.track import BotSort, ByteTrack, Tracks, kalman, make_tracker, tracker_from
from foveal.track.config import TrackConfig

BOX = np.array([-20.0, -40.0, 20.0, 40.0])  # a 40 x 80 box around its centre


def scenario(seed: int, frames: int = 40):
    """Per frame: (gt ids, boxes xyxy, scores, classes) of five objects, rows shuffled.

    Objects 1 and 2 (a smaller, farther one) cross each other, in opposite directions in one lane: their boxes
    overlap for a few frames. 3, 4, 5 move in lanes of their own. Object 1 and one other go undetected for 3 to
    5 frames. Boxes jitter by about 1.5 px; classes flicker.
    """
    rng = np.random.default_rng(seed)
    speed = rng.uniform(6, 10)
    lane = rng.uniform(300, 330)
    apart = rng.choice([-1, 1]) * rng.uniform(6, 12)  # the crossing lane's two halves, in y
    start = np.array([[400 - speed * frames / 2, lane], [400 + speed * frames / 2, lane + apart],
                      [rng.uniform(0, 800), 40], [rng.uniform(0, 800), 150], [rng.uniform(0, 800), 480]])
    velocity = np.array([[speed, 0], [-speed, 0], *rng.uniform([-8, -1], [8, 1], (3, 2))])
    size = np.array([1, 0.8, 1, 1, 1])[:, None] * BOX
    hidden = {1: range(g := int(rng.integers(24, 30)), g + int(rng.integers(3, 6)))}
    hidden[int(rng.integers(2, 6))] = range(g := int(rng.integers(22, 30)), g + int(rng.integers(3, 6)))
    out = []
    for t in range(frames):
        ids = np.array([i for i in range(1, 6) if t not in hidden.get(i, ())])
        centres = (start + velocity * t)[ids - 1]
        boxes = np.tile(centres, 2) + size[ids - 1] + rng.normal(0, 1.5, (len(ids), 4))
        order = rng.permutation(len(ids))
        out.append((ids[order], boxes[order], rng.uniform(0.7, 1.0, len(ids)), rng.integers(0, 3, len(ids))))
    return out


class NaiveTracker:
    """Greedy IoU between each track's last box and this frame's boxes, no motion model: the baseline."""

    def __init__(self):
        self.last, self.next_id = {}, 1

    def update(self, boxes) -> np.ndarray:
        ids = np.zeros(len(boxes), np.int64)
        if self.last and len(boxes):
            known = list(self.last)
            iou = box_iou_numpy(np.array([self.last[i] for i in known]), boxes)
            while iou.size and iou.max() > 0.3:
                row, col = np.unravel_index(iou.argmax(), iou.shape)
                ids[col] = known[row]
                iou[row], iou[:, col] = 0, 0
        for col in np.flatnonzero(ids == 0):
            ids[col], self.next_id = self.next_id, self.next_id + 1
        self.last.update(zip(ids.tolist(), boxes))
        return ids


def identity_errors(pairs) -> int:
    """Switches and fragments: how many more track ids than one per true id, and true ids than one per track."""
    tracks_of, truths_of = defaultdict(set), defaultdict(set)
    for truth, track in pairs:
        tracks_of[truth].add(track)
        truths_of[track].add(truth)
    return sum(len(s) - 1 for s in tracks_of.values()) + sum(len(s) - 1 for s in truths_of.values())


def run(tracker, frames, images=None) -> tuple[list, int]:
    """(true id, track id) of every detection the tracker returned, and how many detections there were."""
    pairs, detections = [], 0
    for t, (ids, boxes, scores, classes) in enumerate(frames):
        tracks = tracker.update(boxes, scores, classes, None if images is None else images[t])
        assert np.array_equal(tracks.boxes, boxes[tracks.index].astype(np.float32))
        assert np.array_equal(tracks.classes, classes[tracks.index])
        pairs += zip(ids[tracks.index].tolist(), tracks.ids.tolist())
        detections += len(ids)
    return pairs, detections


@pytest.mark.parametrize("seed", range(8))
def test_identities_kept_through_crossings_and_gaps(seed):
    frames = scenario(seed)
    for tracker in (ByteTrack(), BotSort(cmc="none")):
        pairs, detections = run(tracker, frames)
        assert identity_errors(pairs) == 0, type(tracker).__name__
        assert len(pairs) >= 0.98 * detections  # every detection followed, but a track's first re-found box
    naive, pairs = NaiveTracker(), []
    for ids, boxes, _, _ in frames:
        pairs += zip(ids.tolist(), naive.update(boxes).tolist())
    assert identity_errors(pairs) >= 1


def one_object(frames: int, scores=None, hidden=()):
    """One box moving 3 px a frame to the right; `hidden` frames have no detection."""
    out = []
    for t in range(frames):
        if t in hidden:
            out.append((np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)))
            continue
        box = BOX + [100 + 3 * t, 100, 100 + 3 * t, 100]
        out.append((np.array([1]), box[None], np.array([0.9 if scores is None else scores[t]]), np.array([0])))
    return out


def test_low_scores_continue_a_track():
    scores = [0.9] * 10 + [0.3] * 4 + [0.9] * 6  # below track_high_thresh (0.5), above track_low_thresh (0.1)
    frames = one_object(20, scores)
    tracker = ByteTrack()
    tracks = [tracker.update(*f[1:]) for f in frames]
    assert all(t.ids.tolist() == [1] for t in tracks)
    assert tracker.next_id == 2  # no other track was started
    # with no second round (track_low_thresh = track_high_thresh) the low frames are not followed
    tracker = ByteTrack(track_low_thresh=0.5)
    found = [len(tracker.update(*f[1:]).ids) for f in frames]
    assert found == [1] * 10 + [0] * 4 + [1] * 6


@pytest.mark.parametrize("unseen, same", [(3, True), (5, True), (6, False), (9, False)])
def test_track_buffer(unseen, same):
    frames = one_object(20 + unseen, hidden=range(10, 10 + unseen))
    tracker = ByteTrack(track_buffer=5)
    ids = [tracker.update(*f[1:]).ids.tolist() for f in frames]
    assert ids[:10] == [[1]] * 10 and ids[10:10 + unseen] == [[]] * unseen
    if same:
        assert ids[10 + unseen:] == [[1]] * 10
    else:  # a new track: tentative for a frame, then the next id (1 is never given again)
        assert ids[10 + unseen:] == [[]] + [[2]] * 9


def panning_video(seed: int, frames: int = 20, size: int = 160):
    """A camera shaking by 10 to 16 px a frame on each axis over a texture (smooth noise at three scales) holding
    four still 12 px squares: (frames (H, W, 3) RGB, per frame (ids, boxes, scores, classes))."""
    rng = np.random.default_rng(seed)
    margin = 40
    world = sum(cv2.resize(rng.uniform(0, 85, (grid, grid, 3)), (size + margin, size + margin),
                           interpolation=cv2.INTER_CUBIC) for grid in (3, 10, 30))  # coarse to fine detail
    world = np.clip(world, 0, 255).astype(np.uint8)
    corners = rng.uniform(margin + 5, size - 17, (4, 2)).round()
    for corner, colour in zip(corners.astype(int), [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        world[corner[1]:corner[1] + 12, corner[0]:corner[0] + 12] = colour
    offset, images, dets = rng.integers(0, margin + 1, 2), [], []
    for _ in range(frames):
        images.append(world[offset[1]:offset[1] + size, offset[0]:offset[0] + size].copy())
        boxes = np.concatenate([corners - offset, corners - offset + 12], 1)
        dets.append((np.arange(1, 5), boxes, np.full(4, 0.9), np.zeros(4, np.int64)))
        step = rng.integers(10, 17, 2)
        offset = np.where(offset + step <= margin, offset + step, offset - step)  # stay inside the world
    return images, dets


@pytest.mark.parametrize("seed", range(3))
def test_camera_motion_compensation(seed):
    images, dets = panning_video(seed)
    pairs, detections = run(ByteTrack(), dets, images)
    assert identity_errors(pairs) > 0 or len(pairs) < 0.5 * detections  # lost: new ids or none at all
    for cmc in ("sparse", "ecc"):
        pairs, detections = run(BotSort(cmc=cmc), dets, images)
        assert identity_errors(pairs) == 0 and len(pairs) == detections, cmc
    pairs, detections = run(ByteTrack(cmc="sparse"), dets, images)  # ByteTrack compensates too when asked
    assert identity_errors(pairs) == 0 and len(pairs) == detections


def test_make_tracker_and_config():
    assert type(make_tracker("bytetrack")) is ByteTrack and make_tracker("bytetrack").motion.method == "none"
    tracker = tracker_from(TrackConfig(tracker="botsort", track_buffer=7))
    assert type(tracker) is BotSort and tracker.track_buffer == 7 and tracker.motion.method == "sparse"
    for call, message in [(lambda: make_tracker("bytetrak"), "did you mean 'bytetrack'"),
                          (lambda: make_tracker("botsort", track_bufer=3), "did you mean 'track_buffer'"),
                          (lambda: make_tracker("bytetrack", cmc="orb"), "cmc: expected one of"),
                          (lambda: make_tracker("bytetrack", track_buffer=0), "track_buffer: 0 is out of range")]:
        with pytest.raises(FovealError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


def test_empty_frames_and_ids_never_reused():
    tracker = make_tracker("botsort", track_buffer=2)
    empty = tracker.update(np.zeros((0, 4)), [], [], np.zeros((64, 64, 3), np.uint8))
    assert isinstance(empty, Tracks) and empty.boxes.shape == (0, 4) and empty.ids.dtype == np.int64
    visits_of, given = defaultdict(set), []
    for t in range(30):  # two objects come and go, away 3 or 5 frames (longer than the buffer) between visits
        shown = np.array([t % 10 < 5, t % 7 < 4])
        boxes = np.array([[10.0, 10, 30, 30], [40, 40, 60, 60]])[shown]
        visits = np.array([(0, t // 10), (1, t // 7)])[shown]
        tracks = tracker.update(boxes, np.full(len(boxes), 0.9), np.zeros(len(boxes)), None)
        for track_id, visit in zip(tracks.ids.tolist(), visits[tracks.index].tolist()):
            visits_of[track_id].add(tuple(visit))
            given += [track_id] if track_id not in given else []
    assert all(len(visits) == 1 for visits in visits_of.values())  # an id is one visit of one object
    assert given == list(range(1, 9))  # 3 + 5 visits, ids in order
    tracker.reset()
    assert tracker.update([[0, 0, 5, 5]], [0.9], [0]).ids.tolist() == [1]


def test_kalman_learns_velocity_and_follows_the_camera():
    for form in kalman.FORMS:
        box = np.array([[100.0, 50, 120, 90]])
        mean, cov = kalman.initiate(kalman.to_state_box(box, form), form)
        for t in range(1, 30):
            mean, cov = kalman.predict(mean, cov, form)
            mean, cov = kalman.update(mean, cov, kalman.to_state_box(box + [3 * t, -2 * t] * 2, form), form)
        assert np.allclose(mean[0, 4:6], [3, -2], atol=0.05)
        assert np.allclose(kalman.to_xyxy(mean, form), box + [87, -58] * 2, atol=0.5)
        shifted, _ = kalman.warp(mean, cov, np.array([[1.0, 0, 7], [0, 1, -4]]), form)
        assert np.allclose(kalman.to_xyxy(shifted, form), kalman.to_xyxy(mean, form) + [7, -4] * 2)
        zoomed, _ = kalman.warp(mean, cov, np.array([[2.0, 0, 0], [0, 2, 0]]), form)
        assert np.allclose(kalman.to_xyxy(zoomed, form), 2 * kalman.to_xyxy(mean, form))
