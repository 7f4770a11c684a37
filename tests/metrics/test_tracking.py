"""The tracking scores against TrackEval (the MOTChallenge benchmark's code: CLEAR, Identity, HOTA and their
combination over sequences) and motmetrics (CLEAR-MOT and IDF1 where it defines them as TrackEval does), on
random and crafted sequences, and through MOTChallenge files."""

import contextlib
import io

import numpy as np
import pytest

from foveal.data.formats.mot import MOT17_DISTRACTORS, mot_lines
from foveal.metrics.tracking import score_mot_files, score_mot_folder
from foveal.errors import FovealError
from foveal.metrics.tracking import combine, sequence_counts, track_scores
from foveal.ops.boxes import box_iou_numpy

with contextlib.redirect_stdout(io.StringIO()):  # it prints a line about BURST, and each metric its config
    import trackeval

    TRACKEVAL = [trackeval.metrics.CLEAR(), trackeval.metrics.Identity(), trackeval.metrics.HOTA()]

TRACKEVAL_NAMES = {"MOTA": "MOTA", "MOTP": "MOTP", "TP": "CLR_TP", "FP": "CLR_FP", "FN": "CLR_FN", "IDSW": "IDSW",
                   "Frag": "Frag", "MT": "MT", "PT": "PT", "ML": "ML", "IDF1": "IDF1", "IDP": "IDP", "IDR": "IDR",
                   "IDTP": "IDTP", "IDFP": "IDFP", "IDFN": "IDFN", "HOTA(0)": "HOTA(0)", "LocA(0)": "LocA(0)"}
HOTA_ARRAYS = ["HOTA", "DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe", "AssPr"]  # averaged over alpha


def random_sequence(rng, frames=25, objects=6, noise=3.0, spread=200.0):
    """Objects moving in straight lines over random spans; the tracker misses some, jitters boxes, swaps two
    tracks' ids or gives one a new id now and then, and adds false positives."""
    start = rng.uniform(0, spread, (objects, 2))
    velocity = rng.normal(0, 2, (objects, 2))
    spans = [(rng.integers(0, frames // 2), rng.integers(frames // 2, frames + 1)) for _ in range(objects)]
    track_of = np.arange(objects) + 100
    gt, pred = [], []
    for t in range(frames):
        ids = np.array([i for i, (a, b) in enumerate(spans) if a <= t < b], np.int64)
        corner = start[ids] + velocity[ids] * t
        boxes = np.concatenate([corner, corner + 20], 1)
        gt.append((ids, boxes))
        seen = rng.random(len(ids)) > 0.2
        if rng.random() < 0.1:
            i, j = rng.choice(objects, 2, replace=False)
            track_of[[i, j]] = track_of[[j, i]]
        if rng.random() < 0.05:
            track_of[rng.integers(objects)] = rng.integers(1000, 10**6)
        false = rng.uniform(0, spread + 50, (rng.integers(0, 3), 2))
        pred.append((np.concatenate([track_of[ids[seen]], 5000 + np.arange(len(false))]),
                     np.concatenate([boxes[seen] + rng.normal(0, noise, (seen.sum(), 4)), np.c_[false, false + 20]])))
    return gt, pred


def trackeval_data(gt, pred) -> dict:
    """The dict TrackEval's datasets give its metrics: ids 0-based and contiguous over the sequence."""
    gt_unique = np.unique(np.concatenate([ids for ids, _ in gt]))
    pred_unique = np.unique(np.concatenate([ids for ids, _ in pred]))
    return {"num_timesteps": len(gt), "num_gt_ids": len(gt_unique), "num_tracker_ids": len(pred_unique),
            "num_gt_dets": sum(len(ids) for ids, _ in gt), "num_tracker_dets": sum(len(ids) for ids, _ in pred),
            "gt_ids": [np.searchsorted(gt_unique, ids) for ids, _ in gt],
            "tracker_ids": [np.searchsorted(pred_unique, ids) for ids, _ in pred],
            "similarity_scores": [box_iou_numpy(g, p) for (_, g), (_, p) in zip(gt, pred)]}


def trackeval_scores(results: list[dict]) -> dict:
    """CLEAR's, Identity's and HOTA's results as foveal names them."""
    merged = {key: value for result in results for key, value in result.items()}
    scores = {ours: merged[theirs] for ours, theirs in TRACKEVAL_NAMES.items()}
    scores.update({name: np.mean(merged[name]) for name in HOTA_ARRAYS})
    return scores


def assert_close(ours: dict, reference: dict):
    wrong = {key: (ours[key], value) for key, value in reference.items() if abs(ours[key] - value) > 1e-6}
    assert wrong == {}


@pytest.mark.parametrize("seed", range(8))
def test_one_sequence_equals_trackeval(seed):
    gt, pred = random_sequence(np.random.default_rng(seed))
    ours = track_scores(gt, pred)
    assert_close(ours, trackeval_scores([metric.eval_sequence(trackeval_data(gt, pred)) for metric in TRACKEVAL]))
    assert ours["IDSW"] > 0 and ours["FP"] > 0 and ours["FN"] > 0 and ours["Frag"] > 0  # every path was taken


def test_sequences_combine_as_trackeval():
    rng = np.random.default_rng(10)
    sequences = [random_sequence(rng, frames=rng.integers(5, 30), objects=rng.integers(1, 8)) for _ in range(5)]
    sequences.append(([(np.zeros(0, np.int64), np.zeros((0, 4)))] * 3, sequences[0][1][:3]))  # no ground truth
    sequences.append((sequences[1][0][:4], [(np.zeros(0, np.int64), np.zeros((0, 4)))] * 4))  # nothing tracked
    per_metric = [{k: metric.eval_sequence(trackeval_data(*s)) for k, s in enumerate(sequences)}
                  for metric in TRACKEVAL]
    reference = trackeval_scores([metric.combine_sequences(results)
                                  for metric, results in zip(TRACKEVAL, per_metric)])
    assert_close(combine([sequence_counts(*s) for s in sequences]).metrics(), reference)
    for k in (5, 6):  # the empty sequences alone, too
        alone = trackeval_scores([results[k] for results in per_metric])
        if k == 5:  # no ground truth: TrackEval's table leaves its MOTA at 0, its combination gives the formula's
            alone["MOTA"] = 1 - alone["FP"]
        assert_close(track_scores(*sequences[k]), alone)


def frames_of(*rows):
    """Frames from rows of (id, x1, y1, x2, y2) lists, one list per frame."""
    return [(np.array([r[0] for r in frame], np.int64), np.array([r[1:] for r in frame], float).reshape(-1, 4))
            for frame in rows]


A, B = (0, 0, 10, 10), (100, 0, 110, 10)  # two objects far apart


def test_crafted_id_swap():
    """Two objects, their tracks' ids swapped half way: two ID switches, and identities right half the time."""
    gt = frames_of(*[[(1, *A), (2, *B)]] * 10)
    pred = frames_of(*[[(7, *A), (8, *B)]] * 5, *[[(8, *A), (7, *B)]] * 5)
    scores = track_scores(gt, pred)
    assert (scores["IDSW"], scores["FP"], scores["FN"], scores["Frag"], scores["MT"]) == (2, 0, 0, 0, 2)
    assert scores["MOTA"] == pytest.approx(1 - 2 / 20) and scores["MOTP"] == pytest.approx(1)
    assert (scores["IDTP"], scores["IDF1"]) == (10, pytest.approx(0.5))
    # every match's pair (object, track) shares 5 of the 10 + 10 frames the two are in: AssA = 5 / 15
    assert scores["DetA"] == pytest.approx(1) and scores["AssA"] == pytest.approx(1 / 3)
    assert scores["HOTA"] == pytest.approx(np.sqrt(1 / 3))


def test_crafted_miss_and_crossing():
    """Object 1 is missed for two frames and picked up again (a fragmentation, no switch); objects 2 and 3 cross,
    and where their boxes overlap the tracker keeps each id on its object (the kept-match rule)."""
    moving = [[(2, 20 + 6 * t, 50, 40 + 6 * t, 70), (3, 80 - 6 * t, 52, 100 - 6 * t, 72)] for t in range(10)]
    gt = frames_of(*[[(1, *A)] + moving[t] for t in range(10)])
    pred = frames_of(*[([(5, *A)] if t not in (3, 4) else []) + [(6, *moving[t][0][1:]), (9, *moving[t][1][1:])]
                       for t in range(10)])
    scores = track_scores(gt, pred)
    assert (scores["IDSW"], scores["FN"], scores["Frag"], scores["FP"]) == (0, 2, 1, 0)
    assert (scores["MT"], scores["PT"]) == (2, 1)  # 8 of 10 frames is not more than 80%: partly tracked
    assert scores["IDF1"] == pytest.approx(28 / 29)


def test_frames_must_agree():
    gt = frames_of([(1, *A)], [(1, *A)])
    with pytest.raises(FovealError, match="2 ground-truth frames but 1 tracked"):
        track_scores(gt, gt[:1])
    with pytest.raises(FovealError, match="frame 2 of the tracks has id 4 twice"):
        track_scores(gt, frames_of([], [(4, *A), (4, *B)]))


def test_a_long_sequence_is_quick():
    import time

    gt, pred = random_sequence(np.random.default_rng(0), frames=1000, objects=50, spread=1000)
    start = time.perf_counter()
    track_scores(gt, pred)
    assert time.perf_counter() - start < 2.0


# motmetrics: where its conventions and TrackEval's meet. They part where a frame lacks ground truth or tracks,
# where a match could be kept from several frames back, and at exactly 80% / 20% tracked (MT, ML). So every
# object here has its own cell (one candidate box at most), object 0 lives through every frame, and no span is
# a multiple of 5 frames.

def separated_sequence(rng, frames=30, objects=8):
    cells = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2)[: objects + 4] * 100.0
    lengths = rng.choice([7, 9, 11, 13, 17, 19], objects - 1)
    spans = [(0, frames)] + [(a, a + n) for a, n in zip(rng.integers(0, frames - lengths + 1), lengths)]
    seen_rate = np.r_[1.0, rng.uniform(0, 1, objects - 1)]  # object 0 always found, some others seldom
    track_of = np.arange(objects) + 10
    gt, pred = [], []
    for t in range(frames):
        ids = np.array([i for i, (a, b) in enumerate(spans) if a <= t < b], np.int64)
        boxes = np.concatenate([cells[ids], cells[ids] + 40], 1) + rng.normal(0, 1, (len(ids), 4))
        gt.append((ids, boxes))
        seen = rng.random(len(ids)) < seen_rate[ids]
        if rng.random() < 0.1:
            i, j = rng.choice(objects, 2, replace=False)
            track_of[[i, j]] = track_of[[j, i]]
        false = cells[objects:][rng.random(4) < 0.2]  # the empty cells
        pred.append((np.concatenate([track_of[ids[seen]], 500 + np.arange(len(false))]),
                     np.concatenate([boxes[seen] + rng.normal(0, 4, (seen.sum(), 4)), np.c_[false, false + 40]])))
    return gt, pred


def motmetrics_scores(gt, pred, monkeypatch) -> dict:
    monkeypatch.setattr(np, "asfarray", lambda a, dtype=float: np.asarray(a, dtype), raising=False)  # NumPy 2
    import motmetrics as mm

    def xywh(boxes):
        return np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]

    accumulator = mm.MOTAccumulator(auto_id=True)
    for (gt_ids, gt_boxes), (ids, boxes) in zip(gt, pred):
        accumulator.update(gt_ids, ids, mm.distances.iou_matrix(xywh(gt_boxes), xywh(boxes), max_iou=0.5))
    names = {"mota": "MOTA", "motp": "MOTP", "num_switches": "IDSW", "num_fragmentations": "Frag",
             "mostly_tracked": "MT", "partially_tracked": "PT", "mostly_lost": "ML", "num_false_positives": "FP",
             "num_misses": "FN", "idf1": "IDF1", "idp": "IDP", "idr": "IDR"}
    summary = mm.metrics.create().compute(accumulator, metrics=list(names), name="sequence")
    scores = {ours: float(summary[theirs].iloc[0]) for theirs, ours in names.items()}
    scores["MOTP"] = 1 - scores["MOTP"]  # its distance, 1 - IoU
    return scores


@pytest.mark.parametrize("seed", range(6))
def test_random_sequences_equal_motmetrics(seed, monkeypatch):
    gt, pred = separated_sequence(np.random.default_rng(seed))
    ours = track_scores(gt, pred)
    assert_close(ours, motmetrics_scores(gt, pred, monkeypatch))
    assert ours["IDSW"] > 0 and ours["FN"] > 0 and ours["FP"] > 0 and ours["Frag"] > 0


def test_crafted_sequences_equal_motmetrics(monkeypatch):
    swap = frames_of(*[[(1, *A), (2, *B)]] * 7, ), frames_of(*[[(7, *A), (8, *B)]] * 3, *[[(8, *A), (7, *B)]] * 4)
    gone = frames_of(*[[(1, *A), (2, *B)]] * 9), frames_of(*[[(7, *A), (8, *B)]] * 3, *[[(8, *B)]] * 3,
                                                          *[[(7, *A), (8, *B), (9, 300, 0, 310, 10)]] * 3)
    for gt, pred in (swap, gone):
        assert_close(track_scores(gt, pred), motmetrics_scores(gt, pred, monkeypatch))


# MOTChallenge files

def write_mot(path, frames, scores=None):
    path.write_text("".join(mot_lines(t + 1, ids, boxes, np.ones(len(ids)) if scores is None else scores)
                            for t, (ids, boxes) in enumerate(frames)))
    return path


def test_mot_files_score_as_trackeval(tmp_path):
    gt, pred = random_sequence(np.random.default_rng(3))
    gt = [(ids, boxes.round(2)) for ids, boxes in gt]  # as the file keeps them
    pred = [(ids, boxes.round(2)) for ids, boxes in pred]
    scores = score_mot_files(write_mot(tmp_path / "result.txt", pred), write_mot(tmp_path / "gt.txt", gt))
    assert_close(scores, trackeval_scores([metric.eval_sequence(trackeval_data(gt, pred)) for metric in TRACKEVAL]))


def test_mot_files_skip_ignored_and_other_classes(tmp_path):
    """Ground truth rows flagged 0, or of a class not asked for, are not scored; the result file's last frame
    may come before the ground truth's."""
    (tmp_path / "gt.txt").write_text("1,1,0,0,10,10,1,1,1\n1,2,100,0,10,10,0,1,1\n1,3,200,0,10,10,1,3,1\n"
                                     "2,1,0,0,10,10,1,1,1\n")
    (tmp_path / "result.txt").write_text("1,5,0,0,10,10,0.9,-1,-1,-1\n")
    scores = score_mot_files(tmp_path / "result.txt", tmp_path / "gt.txt", classes=(1,))
    assert (scores["frames"], scores["gt_dets"], scores["TP"], scores["FN"], scores["FP"]) == (2, 2, 1, 1, 0)
    everything = score_mot_files(tmp_path / "result.txt", tmp_path / "gt.txt")
    assert (everything["gt_dets"], everything["FN"]) == (3, 2)


def write_mot17_sequence(root, name, seed):
    """A ground-truth folder root/gt/<name> and results root/trackers/ours/data/<name>.txt of 20 frames:
    pedestrians (one flagged 0 now and then), a static person, a rider, a car and a reflection; the tracker
    follows them all, swaps two pedestrians' ids at frame 10 and adds a false positive now and then."""
    rng = np.random.default_rng(seed)
    gt_lines, result_lines = [], []
    for t in range(1, 21):
        for k, kind in enumerate([1, 1, 1, 1, 7, 2, 3, 12]):
            x, y = 60 * k + t, 50 + 2 * t
            consider = 0 if (k == 3 and t % 3 == 0) or kind == 3 else 1
            if rng.random() < 0.9:
                gt_lines.append(f"{t},{k + 1},{x},{y},40,80,{consider},{kind},{rng.uniform(0, 1):.2f}\n")
            if rng.random() < 0.8:
                track = k + 1 if t < 10 or k > 1 else 2 - k
                result_lines.append(mot_lines(t, [track], [[x, y, x + 40, y + 80] + rng.normal(0, 3, 4)], [0.9]))
        if rng.random() < 0.5:
            x = rng.uniform(0, 500)
            result_lines.append(mot_lines(t, [99], [[x, 300, x + 40, 380]], [0.5]))
    gt = root / "gt" / name / "gt" / "gt.txt"
    gt.parent.mkdir(parents=True)
    gt.write_text("".join(gt_lines))
    (gt.parent.parent / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nseqLength=20\n")
    result = root / "trackers" / "ours" / "data" / f"{name}.txt"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text("".join(result_lines))
    return result, gt


def test_mot17_files_score_as_the_benchmark(tmp_path):
    """score_mot_files with classes=(1,) and MOT17's distractors equals TrackEval's MOT17 evaluation itself
    (MotChallenge2DBox reading the same files): rows flagged 0 and non-pedestrians left out of the ground
    truth, result boxes over static persons, riders and reflections neither hits nor false positives; and
    score_mot_folder's sequences and their combination equal TrackEval's too."""
    files = {name: write_mot17_sequence(tmp_path, name, seed) for seed, name in enumerate(["SEQ-01", "SEQ-02"])}
    quiet = {"PRINT_CONFIG": False}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = trackeval.Evaluator({**quiet, "PRINT_RESULTS": False, "OUTPUT_SUMMARY": False,
                                         "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "TIME_PROGRESS": False,
                                         "USE_PARALLEL": False})
        dataset = trackeval.datasets.MotChallenge2DBox(
            {**quiet, "GT_FOLDER": str(tmp_path / "gt"), "TRACKERS_FOLDER": str(tmp_path / "trackers"),
             "OUTPUT_FOLDER": str(tmp_path / "out"), "SKIP_SPLIT_FOL": True,
             "SEQ_INFO": {name: 20 for name in files}, "BENCHMARK": "MOT17"})
        metrics = [trackeval.metrics.CLEAR(quiet), trackeval.metrics.Identity(quiet), trackeval.metrics.HOTA()]
        results, _ = evaluator.evaluate([dataset], metrics)
    reference = {name: trackeval_scores(list(result["pedestrian"].values()))
                 for name, result in results["MotChallenge2DBox"]["ours"].items()}
    result, gt = files["SEQ-01"]
    ours = score_mot_files(result, gt, classes=(1,), distractors=MOT17_DISTRACTORS)
    assert_close(ours, reference["SEQ-01"])
    assert ours["IDSW"] > 0 and ours["FP"] > 0 and ours["FN"] > 0
    assert score_mot_files(result, gt, classes=(1,))["FP"] > ours["FP"]  # the distractors' boxes, counted

    folder = score_mot_folder(tmp_path / "trackers" / "ours" / "data", tmp_path / "gt", classes=(1,),
                              distractors=MOT17_DISTRACTORS)
    assert list(folder) == ["SEQ-01", "SEQ-02", "COMBINED"]
    for name in files:
        assert_close(folder[name], reference[name])
    assert_close(folder["COMBINED"], reference["COMBINED_SEQ"])
    files["SEQ-02"][0].unlink()
    with pytest.raises(FovealError, match="no results for sequence SEQ-02"):
        score_mot_folder(tmp_path / "trackers" / "ours" / "data", tmp_path / "gt")
