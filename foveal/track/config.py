"""The keys of the `track` mode, shared by every task whose models find objects (detect, segment)."""

from dataclasses import dataclass

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
    show_trails: bool = opt(False, "track: draw each track's recent path")
    count: bool = opt(False, "track: print the distinct objects of each class (tracks.csv lists them)")
    line: str = opt("", "track: x1,y1,x2,y2 in pixels: count the tracks crossing this line, in each direction")
    gt: bool = opt(False, "track: score against the ground truth of a MOTChallenge source (gt/gt.txt); data= "
                          "sequences are always scored")
    gt_classes: str = opt("", "track: score only these class ids of a MOTChallenge ground truth, a comma list "
                              "(e.g. 1: MOT17's pedestrians; empty: every class)")


# what a tracker takes (the rest is the track mode's)
TRACK_KEYS = ("track_high_thresh", "track_low_thresh", "new_track_thresh", "track_buffer", "match_thresh", "cmc")
