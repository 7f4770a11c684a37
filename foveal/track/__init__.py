"""Multi-object trackers: ByteTrack and BoT-SORT, plain classes that follow a detector's boxes through a video.

    tracker = make_tracker("bytetrack")             # or tracker_from(cfg): the track keys of a run's config
    for frame in video:
        det = detector(frame)                       # any detector: (N, 4) x1 y1 x2 y2 boxes, scores, classes
        tracks = tracker.update(det["boxes"], det["scores"], det["labels"], frame)
        tracks.ids, tracks.boxes, tracks.index      # index: the row of det each track took (masks follow it)
"""

from ..errors import FovealError, did_you_mean
from .botsort import BotSort
from .bytetrack import ByteTrack
from .config import TRACK_KEYS
from .tracks import Tracks

__all__ = ["Tracks", "ByteTrack", "BotSort", "make_tracker", "tracker_from"]


def make_tracker(name: str = "bytetrack", **keys):
    """A new tracker by name (bytetrack, botsort); keys: TrackConfig's fields other than `tracker`."""
    trackers = {"bytetrack": ByteTrack, "botsort": BotSort}
    if name not in trackers:
        raise FovealError(f"unknown tracker '{name}'{did_you_mean(name, trackers)}; choose from {', '.join(trackers)}")
    return trackers[name](**keys)


def tracker_from(cfg):
    """make_tracker with the track keys of a run's config (TrackConfig's fields)."""
    return make_tracker(cfg.tracker, **{key: getattr(cfg, key) for key in TRACK_KEYS})
