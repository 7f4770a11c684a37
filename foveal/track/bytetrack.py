"""ByteTrack (Zhang et al. 2022): boxes followed by a Kalman filter and IoU matching, low-scoring detections too."""

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..config import build_config
from ..errors import FovealError, did_you_mean
from ..ops.boxes import box_iou_numpy
from . import kalman
from .config import TRACK_KEYS, TrackConfig
from .motion import CameraMotion
from .tracks import Tracks

TENTATIVE, TRACKED, LOST = 0, 1, 2  # a track's state: started last frame, matched last frame, unmatched since
LOW_MATCH_THRESH = 0.5  # a low-scoring detection is often a false one: it continues a track only at IoU >= 0.5
TENTATIVE_MATCH_THRESH = 0.7  # a tentative track's second box: cost 1 - IoU * score at most this
UNMATCHABLE = 1e6  # the cost given to pairs above the threshold, so that the assignment goes around them


def match(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the least-cost one-to-one assignment (Hungarian), with no pair costing over thresh."""
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = linear_sum_assignment(np.where(cost > thresh, UNMATCHABLE, cost))
    kept = cost[rows, cols] <= thresh
    return rows[kept], cols[kept]


class ByteTrack:
    """Matches each frame's detections to the tracks in three rounds, by the IoU of each detection with each
    track's box as the Kalman filter predicts it:

    1. detections scoring >= track_high_thresh with the confirmed tracks, lost ones included (cost
       1 - IoU * score, at most match_thresh)
    2. the detections scoring in [track_low_thresh, track_high_thresh) with the tracks matched last frame
       and not in round 1 (IoU >= 0.5): an object partly hidden scores low, yet keeps its track
    3. the high detections left with the tentative tracks (started last frame)

    A high detection left, scoring >= new_track_thresh, starts a tentative track (confirmed at once on the
    first frame); a tentative track is confirmed, and given the next id, when matched in the next frame and
    dropped otherwise. A confirmed track unmatched is lost, and dropped after track_buffer frames lost.
    Matching ignores classes: a detector's class flickers between frames, and the track should not break
    when it does. The tracks returned carry their detection's class.
    """

    form = "xyah"  # the Kalman filter's state: cx, cy, aspect, h
    auto_cmc = "none"  # what cmc="auto" means for this tracker
    fuse_score = True  # rounds 1 and 3 weigh IoU by the detection's score, so that a sure box wins a tie

    def __init__(self, **keys):
        unknown = [key for key in keys if key not in TRACK_KEYS]
        if unknown:
            raise FovealError(f"unknown tracker key '{unknown[0]}'{did_you_mean(unknown[0], TRACK_KEYS)}; "
                              f"choose from {', '.join(TRACK_KEYS)}")
        config = build_config(TrackConfig, keys)  # each value checked: its type, range or choices
        for key in TRACK_KEYS:
            setattr(self, key, getattr(config, key))
        self.motion = CameraMotion(self.auto_cmc if self.cmc == "auto" else self.cmc)
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video); ids start again at 1."""
        self.frame_id = 0
        self.next_id = 1
        # the tracks, one row each: id (0 while tentative), Kalman state, state, last frame matched
        self.ids = np.zeros(0, np.int64)
        self.mean, self.cov = np.zeros((0, 8)), np.zeros((0, 8, 8))
        self.state = np.zeros(0, np.int8)
        self.seen = np.zeros(0, np.int64)
        self.motion.reset()

    def _associate(self, predicted, tracks, boxes, scores, dets, thresh: float, fuse: bool):
        """Matched (track rows, detection rows) among the candidates `tracks` and `dets`."""
        if len(tracks) == 0 or len(dets) == 0:
            return tracks[:0], dets[:0]
        similarity = box_iou_numpy(predicted[tracks], boxes[dets])
        if fuse:
            similarity *= scores[dets]
        rows, cols = match(1 - similarity, thresh)
        return tracks[rows], dets[cols]

    def update(self, boxes, scores, classes, frame: np.ndarray | None = None) -> Tracks:
        """The confirmed tracks this frame's detections continue or start; boxes (N, 4) xyxy, frame (H, W, 3)
        RGB uint8 or None (needed only by camera-motion compensation)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        classes = np.asarray(classes, np.int64).reshape(-1)
        self.frame_id += 1
        affine = self.motion.warp(frame)  # called every frame: it keeps the frame to compare the next one with
        if len(self.ids):
            # a lost track keeps its box's size: a growth measured over a few noisy frames is no guide for many
            self.mean[np.ix_(self.state == LOST, kalman.SIZE_VELOCITY[self.form])] = 0
            self.mean, self.cov = kalman.predict(self.mean, self.cov, self.form)
            if self.motion.method != "none":
                self.mean, self.cov = kalman.warp(self.mean, self.cov, affine, self.form)
        predicted = kalman.to_xyxy(self.mean, self.form)

        high = np.flatnonzero(scores >= self.track_high_thresh)
        low = np.flatnonzero((scores >= self.track_low_thresh) & (scores < self.track_high_thresh))
        confirmed = np.flatnonzero(self.state != TENTATIVE)
        t1, d1 = self._associate(predicted, confirmed, boxes, scores, high, self.match_thresh, self.fuse_score)
        left = np.setdiff1d(confirmed, t1)
        t2, d2 = self._associate(predicted, left[self.state[left] == TRACKED], boxes, scores, low,
                                 LOW_MATCH_THRESH, False)
        high = np.setdiff1d(high, d1)
        t3, d3 = self._associate(predicted, np.flatnonzero(self.state == TENTATIVE), boxes, scores, high,
                                 TENTATIVE_MATCH_THRESH, self.fuse_score)
        high = np.setdiff1d(high, d3)
        tracks, dets = np.concatenate([t1, t2, t3]), np.concatenate([d1, d2, d3])

        self.mean[tracks], self.cov[tracks] = kalman.update(self.mean[tracks], self.cov[tracks],
                                                            kalman.to_state_box(boxes[dets], self.form), self.form)
        self._confirm(tracks[self.state[tracks] == TENTATIVE])
        unmatched = np.ones(len(self.ids), bool)
        unmatched[tracks] = False
        self.state[unmatched & (self.state == TRACKED)] = LOST
        self.state[tracks] = TRACKED
        self.seen[tracks] = self.frame_id
        matched_ids = self.ids[tracks]
        kept = ~(unmatched & (self.state == TENTATIVE)) & (self.frame_id - self.seen <= self.track_buffer)
        self._keep(kept)

        new = high[scores[high] >= self.new_track_thresh]
        self._start(kalman.to_state_box(boxes[new], self.form))
        if self.frame_id == 1:  # nothing to confirm a first frame's boxes against: taken as they are
            self._confirm(np.arange(len(self.ids)))  # every track is new
            matched_ids, dets = self.ids.copy(), new
        order = np.argsort(matched_ids)
        dets = dets[order]
        return Tracks(matched_ids[order], boxes[dets].astype(np.float32), scores[dets].astype(np.float32),
                      classes[dets], dets.astype(np.int64))

    def _confirm(self, rows: np.ndarray) -> None:
        self.ids[rows] = np.arange(self.next_id, self.next_id + len(rows))
        self.state[rows] = TRACKED
        self.next_id += len(rows)

    def _keep(self, kept: np.ndarray) -> None:
        self.ids, self.mean, self.cov = self.ids[kept], self.mean[kept], self.cov[kept]
        self.state, self.seen = self.state[kept], self.seen[kept]

    def _start(self, measurements: np.ndarray) -> None:
        mean, cov = kalman.initiate(measurements, self.form)
        n = len(measurements)
        self.ids = np.concatenate([self.ids, np.zeros(n, np.int64)])
        self.mean, self.cov = np.concatenate([self.mean, mean]), np.concatenate([self.cov, cov])
        self.state = np.concatenate([self.state, np.full(n, TENTATIVE, np.int8)])
        self.seen = np.concatenate([self.seen, np.full(n, self.frame_id)])
