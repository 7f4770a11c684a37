"""Multi-object tracking scores, as the MOTChallenge benchmark computes them with TrackEval: CLEAR-MOT (MOTA,
MOTP, ID switches, fragmentations, mostly tracked/lost), the identity scores (IDF1, IDP, IDR) and HOTA.

A sequence is a list of frames, each (ids (n,), boxes (n, 4) xyxy) for the ground truth and alike for the
tracker (FrameTruth and Tracks both fit); a ground-truth box and a tracked box are compared by their IoU.
`sequence_counts` turns one sequence into a TrackCounts of sums, `combine` adds several sequences' sums as
TrackEval's combine_sequences does, and `.metrics()` gives the scores; `track_scores` does all three.

Conventions, TrackEval's (the tests compare with it and with motmetrics):
- CLEAR and identity: a pair matches when its IoU >= `iou` (0.5). CLEAR matches frame by frame, first keeping
  the pairs matched in the frame before (an ID switch costs more than any IoU), then the largest sum of IoUs.
- MOTP is the mean IoU of the matched pairs (higher is better); motmetrics reports 1 - that, a distance.
- MOTA = 1 - (FN + FP + IDSW) / max(1, ground-truth boxes): 1 - FP without ground truth, as TrackEval's
  combination gives (its one-sequence table shows 0 there). MT: tracked in more than 80% of its frames, ML: in
  less than 20%. Frag: how often a ground-truth track is picked up again after being lost (its first start aside).
- HOTA, DetA, AssA, LocA, DetRe, DetPr, AssRe, AssPr: means over the IoU thresholds alpha = 0.05, 0.10 .. 0.95;
  HOTA(0) and LocA(0) are the values at the lowest one.
Two TrackEval habits are kept, so that the numbers are the benchmark's: a frame without ground truth or
without tracked boxes does not break a track for Frag and the kept-match rule, and CLEAR and HOTA accept an
IoU one float epsilon below the threshold where the identity scores do not.
"""

from dataclasses import dataclass, field, fields

import numpy as np
from scipy.optimize import linear_sum_assignment

from pathlib import Path

from ..data.formats.mot import GT_FILE, MotFrame, considered, empty_mot_frame, read_mot_file
from ..errors import FovealError
from ..ops.boxes import box_iou_numpy

ALPHAS = np.arange(0.05, 0.99, 0.05)  # HOTA's IoU thresholds, the very floats TrackEval uses
EPS = np.finfo(float).eps
KEEP_BONUS = 1000.0  # added to a pair matched in the frame before (TrackEval's: above any frame's IoU sum)


def _zeros() -> np.ndarray:
    return np.zeros(len(ALPHAS))


@dataclass
class TrackCounts:
    """The sums the scores of one or more sequences are made of; every field adds over sequences."""

    frames: int = 0
    gt_dets: int = 0  # ground-truth boxes
    pred_dets: int = 0  # tracked boxes
    # CLEAR-MOT
    tp: int = 0
    idsw: int = 0
    frag: int = 0
    mt: int = 0
    pt: int = 0
    ml: int = 0
    iou_sum: float = 0.0  # of the CLEAR matches (MOTP's numerator)
    # identity
    idtp: int = 0
    # HOTA, one entry per alpha
    hota_tp: np.ndarray = field(default_factory=_zeros)
    loc_sum: np.ndarray = field(default_factory=_zeros)  # IoU summed over the matches
    ass_sum: np.ndarray = field(default_factory=_zeros)  # each match's association score (AssA), summed
    ass_re_sum: np.ndarray = field(default_factory=_zeros)
    ass_pr_sum: np.ndarray = field(default_factory=_zeros)

    def metrics(self) -> dict:
        """The scores, named as TrackEval names them (its CLR_TP/CLR_FN/CLR_FP as TP/FN/FP); rates in [0, 1]."""
        fn, fp = self.gt_dets - self.tp, self.pred_dets - self.tp
        idfn, idfp = self.gt_dets - self.idtp, self.pred_dets - self.idtp
        hota_fn, hota_fp = self.gt_dets - self.hota_tp, self.pred_dets - self.hota_tp
        det_a = self.hota_tp / np.maximum(1, self.hota_tp + hota_fn + hota_fp)
        ass_a = self.ass_sum / np.maximum(1, self.hota_tp)
        hota = np.sqrt(det_a * ass_a)
        loc_a = np.maximum(1e-10, self.loc_sum) / np.maximum(1e-10, self.hota_tp)  # 1 where nothing matched
        scores = {
            "MOTA": 1 - (fn + fp + self.idsw) / max(1, self.gt_dets),
            "MOTP": self.iou_sum / max(1, self.tp),
            "TP": self.tp, "FP": fp, "FN": fn, "IDSW": self.idsw, "Frag": self.frag,
            "MT": self.mt, "PT": self.pt, "ML": self.ml,
            "IDF1": self.idtp / max(1, self.idtp + 0.5 * idfp + 0.5 * idfn),
            "IDP": self.idtp / max(1, self.idtp + idfp),
            "IDR": self.idtp / max(1, self.idtp + idfn),
            "IDTP": self.idtp, "IDFP": idfp, "IDFN": idfn,
            "HOTA": hota.mean(), "DetA": det_a.mean(), "AssA": ass_a.mean(), "LocA": loc_a.mean(),
            "DetRe": (self.hota_tp / np.maximum(1, self.hota_tp + hota_fn)).mean(),
            "DetPr": (self.hota_tp / np.maximum(1, self.hota_tp + hota_fp)).mean(),
            "AssRe": (self.ass_re_sum / np.maximum(1, self.hota_tp)).mean(),
            "AssPr": (self.ass_pr_sum / np.maximum(1, self.hota_tp)).mean(),
            "HOTA(0)": hota[0], "LocA(0)": loc_a[0],
            "frames": self.frames, "gt_dets": self.gt_dets, "pred_dets": self.pred_dets,
        }
        return {key: int(value) if isinstance(value, (int, np.integer)) else float(value)
                for key, value in scores.items()}


def combine(counts: list[TrackCounts]) -> TrackCounts:
    """Several sequences' counts as one: TrackEval's combine_sequences (the CLEAR and identity counts summed,
    AssA/AssRe/AssPr and LocA averaged over the sequences weighted by their matches)."""
    empty = TrackCounts()
    return TrackCounts(**{f.name: sum((getattr(c, f.name) for c in counts), start=getattr(empty, f.name))
                          for f in fields(TrackCounts)})


def track_scores(gt_frames: list, pred_frames: list, iou: float = 0.5) -> dict:
    """The scores of one sequence: the dict of TrackCounts.metrics()."""
    return sequence_counts(gt_frames, pred_frames, iou).metrics()


def sequence_counts(gt_frames: list, pred_frames: list, iou: float = 0.5) -> TrackCounts:
    """The counts of one sequence; gt_frames and pred_frames hold one (ids, boxes) per frame."""
    if len(gt_frames) != len(pred_frames):
        raise FovealError(f"tracking scores: {len(gt_frames)} ground-truth frames but {len(pred_frames)} "
                          f"tracked frames; give one entry per frame to both (empty where nothing is there)")
    gt_ids, gt_boxes, num_gt = _contiguous(gt_frames, "ground truth")
    pred_ids, pred_boxes, num_pred = _contiguous(pred_frames, "tracks")
    ious = [box_iou_numpy(g, p) for g, p in zip(gt_boxes, pred_boxes)]
    counts = TrackCounts(frames=len(gt_frames), gt_dets=sum(map(len, gt_ids)), pred_dets=sum(map(len, pred_ids)))
    _clear(counts, gt_ids, pred_ids, ious, num_gt, iou)
    counts.idtp = _identity_tp(gt_ids, pred_ids, ious, num_gt, num_pred, iou)
    _hota(counts, gt_ids, pred_ids, ious, num_gt, num_pred)
    return counts


def _contiguous(frames: list, what: str):
    """Per frame: ids renumbered 0..K-1 over the sequence, and boxes as (n, 4) float64; and K."""
    ids = [np.asarray(frame[0], np.int64).reshape(-1) for frame in frames]
    boxes = [np.asarray(frame[1], np.float64).reshape(-1, 4) for frame in frames]
    for t, (i, b) in enumerate(zip(ids, boxes)):
        if len(i) != len(b):
            raise FovealError(f"tracking scores: frame {t + 1} of the {what} has {len(i)} ids but {len(b)} boxes")
        if len(np.unique(i)) != len(i):
            raise FovealError(f"tracking scores: frame {t + 1} of the {what} has id {_repeated(i)} twice; "
                              f"an id is one object, in one place per frame")
    if not ids:
        return ids, boxes, 0
    unique, flat = np.unique(np.concatenate(ids), return_inverse=True)
    return np.split(flat.reshape(-1), np.cumsum([len(i) for i in ids])[:-1]), boxes, len(unique)


def _repeated(ids: np.ndarray) -> int:
    values, counts = np.unique(ids, return_counts=True)
    return int(values[counts > 1][0])


def _clear(counts: TrackCounts, gt_ids, pred_ids, ious, num_gt: int, iou: float) -> None:
    """CLEAR-MOT's matches frame by frame; fills tp, idsw, frag, mt/pt/ml and iou_sum."""
    last = np.full(num_gt, -1)  # the track each object was last matched to, in any frame (ID switches)
    before = np.full(num_gt, -1)  # ... in the frame before (the match kept, and Frag); -1: none
    present, tracked, starts = np.zeros(num_gt), np.zeros(num_gt), np.zeros(num_gt)
    for g, p, sim in zip(gt_ids, pred_ids, ious):
        present[g] += 1
        if len(g) == 0 or len(p) == 0:  # TrackEval leaves `before` as it is in such a frame
            continue
        score = sim + KEEP_BONUS * (before[g][:, None] == p[None, :])
        score[sim < iou - EPS] = 0
        rows, cols = linear_sum_assignment(score, maximize=True)
        kept = score[rows, cols] > EPS
        rows, cols = rows[kept], cols[kept]
        objects, tracks = g[rows], p[cols]
        counts.idsw += int(np.sum((last[objects] >= 0) & (last[objects] != tracks)))
        counts.tp += len(rows)
        counts.iou_sum += float(sim[rows, cols].sum())
        tracked[objects] += 1
        starts[objects] += before[objects] < 0
        last[objects] = tracks
        before[:] = -1
        before[objects] = tracks
    ratio = tracked / np.maximum(1, present)
    counts.mt = int(np.sum(ratio > 0.8))
    counts.pt = int(np.sum(ratio >= 0.2)) - counts.mt
    counts.ml = num_gt - counts.mt - counts.pt
    counts.frag = int(np.sum(np.maximum(starts - 1, 0)))


def _identity_tp(gt_ids, pred_ids, ious, num_gt: int, num_pred: int, iou: float) -> int:
    """IDTP: the most boxes matched (IoU >= iou) under one fixed pairing of objects and tracks for the whole
    sequence; minimising IDFN + IDFP, as TrackEval does, is the same thing, since both are totals less IDTP."""
    together = np.zeros((num_gt, num_pred))  # frames where object i and track j overlap enough
    for g, p, sim in zip(gt_ids, pred_ids, ious):
        rows, cols = np.nonzero(sim >= iou)
        together[g[rows], p[cols]] += 1
    rows, cols = linear_sum_assignment(together, maximize=True)
    return int(together[rows, cols].sum())


def _hota(counts: TrackCounts, gt_ids, pred_ids, ious, num_gt: int, num_pred: int) -> None:
    """HOTA's matches (each frame's pairs chosen by IoU times how well the two ids align over the sequence)
    and their sums at every alpha."""
    gt_count, pred_count = np.zeros(num_gt), np.zeros(num_pred)
    overlap = np.zeros((num_gt, num_pred))  # soft co-occurrence of object i and track j
    for g, p, sim in zip(gt_ids, pred_ids, ious):
        gt_count[g] += 1
        pred_count[p] += 1
        denominator = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        overlap[g[:, None], p[None, :]] += np.divide(sim, denominator, out=np.zeros_like(sim),
                                                     where=denominator > EPS)
    # how well each object and track align over the sequence; the denominator is >= 1, overlap <= either count
    alignment = overlap / (gt_count[:, None] + pred_count[None, :] - overlap)

    matched_gt, matched_pred, matched_iou = [], [], []
    for g, p, sim in zip(gt_ids, pred_ids, ious):
        if len(g) == 0 or len(p) == 0:
            continue
        rows, cols = linear_sum_assignment(alignment[g[:, None], p[None, :]] * sim, maximize=True)
        matched_gt.append(g[rows]), matched_pred.append(p[cols]), matched_iou.append(sim[rows, cols])
    if not matched_iou:
        return
    pairs, pair = np.unique(np.concatenate(matched_gt) * num_pred + np.concatenate(matched_pred),
                            return_inverse=True)  # the (object, track) pairs ever matched, and each match's
    gts, preds = gt_count[pairs // num_pred], pred_count[pairs % num_pred]
    matched_iou = np.concatenate(matched_iou)
    hit = matched_iou[None, :] >= ALPHAS[:, None] - EPS  # (A, M): the matches that count at each alpha
    counts.hota_tp = hit.sum(1).astype(float)
    counts.loc_sum = (hit * matched_iou).sum(1)
    for a in range(len(ALPHAS)):
        together = np.bincount(pair.reshape(-1), weights=hit[a], minlength=len(pairs))  # matches of each pair
        counts.ass_sum[a] = np.sum(together ** 2 / np.maximum(1, gts + preds - together))
        counts.ass_re_sum[a] = np.sum(together ** 2 / np.maximum(1, gts))
        counts.ass_pr_sum[a] = np.sum(together ** 2 / np.maximum(1, preds))


# ---- MOTChallenge files: how users compare trackers --------------------------------------------------------

def score_mot_files(result_path, gt_path, iou: float = 0.5, classes=None, distractors=()) -> dict:
    """A tracker's MOTChallenge results file scored against a ground-truth file (metrics/tracking.py's
    track_scores dict). The ground truth keeps its considered rows of `classes` (file class ids, e.g. (1,)
    for pedestrians; all when None). A result box matched to a ground-truth box of one of the `distractors`
    classes is left out, as the benchmark does: classes=(1,), distractors=MOT17_DISTRACTORS scores as
    TrackEval scores MOT17 and MOT16."""
    return mot_file_counts(result_path, gt_path, iou, classes, distractors).metrics()


def score_mot_folder(results_folder, gt_folder, iou: float = 0.5, classes=None, distractors=()) -> dict:
    """The scores of every sequence of a MOTChallenge folder (each sub-folder with a gt/gt.txt, by name) whose
    results are `results_folder/<sequence>.txt` (the benchmark's submission layout), and of them all combined
    as TrackEval combines them: {sequence: scores, ..., "COMBINED": scores}; keys as score_mot_files'."""
    results_folder, gt_folder = Path(results_folder), Path(gt_folder)
    sequences = sorted(p for p in gt_folder.iterdir() if (p / GT_FILE).is_file()) if gt_folder.is_dir() else []
    if not sequences:
        raise FovealError(f"{gt_folder}: no sequence folder with a {GT_FILE.as_posix()} in it")
    counts = {}
    for sequence in sequences:
        result = results_folder / f"{sequence.name}.txt"
        if not result.is_file():
            raise FovealError(f"{results_folder}: no results for sequence {sequence.name} ({result.name})")
        counts[sequence.name] = mot_file_counts(result, sequence / GT_FILE, iou, classes, distractors)
    scores = {name: one.metrics() for name, one in counts.items()}
    scores["COMBINED"] = combine(list(counts.values())).metrics()
    return scores


def mot_file_counts(result_path, gt_path, iou: float = 0.5, classes=None, distractors=()) -> TrackCounts:
    """score_mot_files' counts, for combining with other sequences' (metrics.tracking.combine)."""
    gt, results = read_mot_file(gt_path), read_mot_file(result_path)
    length = max(len(gt), len(results))  # a file ends at its last row: frames after it are empty
    gt += [empty_mot_frame() for _ in range(length - len(gt))]
    results += [empty_mot_frame() for _ in range(length - len(results))]
    if len(distractors):
        results = [_unmasked(result, truth, distractors) for result, truth in zip(results, gt)]
    return sequence_counts([considered(truth, classes) for truth in gt], results, iou)


def _unmasked(result: MotFrame, truth: MotFrame, distractors) -> MotFrame:
    """The result rows left once those matched to a distractor are dropped; the matching is one-to-one over
    every ground-truth row of the frame, largest IoU sum, IoU >= 0.5 (TrackEval's preprocessing)."""
    if len(result.ids) == 0 or len(truth.ids) == 0:
        return result
    ious = box_iou_numpy(truth.boxes, result.boxes)
    ious[ious < 0.5 - EPS] = 0
    rows, cols = linear_sum_assignment(ious, maximize=True)
    matched = ious[rows, cols] > EPS
    keep = np.ones(len(result.ids), bool)
    keep[cols[matched & np.isin(truth.classes[rows], list(distractors))]] = False
    return MotFrame(*(column[keep] for column in result))
