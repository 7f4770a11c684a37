"""The keys of the `track` mode, shared by every task whose models find objects (detect, segment)."""

from dataclasses import dataclass, fields

from ..config import opt


@dataclass
class TrackConfig:
    tracker: str = opt("bytetrack", "track: the tracker", ("bytetrack", "botsort"))
    track_high_thresh: float = opt(0.5, "track: detections scoring at least this are matched first", range="[0, 1]")
    track_low_thresh: float = opt(0.1, "track: detections scoring at least this (and below track_high_thresh) "
                                        "are matched second, to the tracks left over", range="[0, 1]")
    new_track_thresh: float = opt(0.6, "track: an unmatched detection scoring at least this starts a track",
                                  range="[0, 1]")
    track_buffer: int = opt(30, "track: frames a lost track is kept (and can be found again) before it is dropped",
                            range="[1, inf)")
    match_thresh: float = opt(0.8, "track: the largest matching cost (1 - IoU) a track and a detection may have",
                              range="[0, 1]")
    cmc: str = opt("auto", "track: camera-motion compensation (auto: sparse for botsort, none for bytetrack)",
                   ("auto", "none", "sparse", "ecc"))


TRACK_KEYS = tuple(f.name for f in fields(TrackConfig) if f.name != "tracker")
