"""The embedded `polyps` data (synthetic endoscopy frames) and the Kvasir-SEG / CVC-ClinicDB folder layout."""

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

import foveal
from foveal.data.formats import load_detection_data
from foveal.data.formats.mask_boxes import mask_boxes
from foveal.data.polyps import (MAX_DIAMETER, MIN_DIAMETER, POLYP_CLASS, make_polyp_set, polyp_video_frames,
                                polyps_detection_data, polyps_segmentation_data)
from foveal.data.segmentation import read_labels
from foveal.errors import FovealError
from foveal.tasks.detect.task import load_detect_data
from foveal.tasks.segment.common import SegmentConfig, load_segment_data

from tests.conftest import run_cli

QUICK_RUN = dict(epochs=1, batch=4, imgsz=64, workers=0, threads=1, amp="off", verbose=False)


@pytest.fixture(scope="module")
def frames():
    return make_polyp_set(40, seed=1)


def test_frames_are_the_same_every_time():
    first, again = make_polyp_set(5, seed=7), make_polyp_set(5, seed=7)
    for a, b in zip(first, again):
        assert a.image.tobytes() == b.image.tobytes()
        assert a.masks.tobytes() == b.masks.tobytes() and a.boxes.tobytes() == b.boxes.tobytes()
    assert first[0].image.tobytes() != make_polyp_set(1, seed=8)[0].image.tobytes()


def test_masks_are_exact_and_boxes_are_their_bounds(frames):
    counts, sizes = [], set()
    for scene in frames:
        height, width = scene.image.shape[:2]
        sizes.add((height, width))
        assert 256 <= height <= 320 and 256 <= width <= 320
        assert scene.masks.shape == (len(scene.boxes), height, width) and scene.masks.dtype == bool
        assert scene.masks.sum(0).max(initial=0) <= 1  # polyps never overlap
        assert np.array_equal(scene.semantic_mask(), scene.masks.any(0).astype(np.uint8))
        assert (scene.labels == 0).all()
        counts.append(len(scene.boxes))
        for mask, box in zip(scene.masks, scene.boxes):
            rows, columns = np.nonzero(mask)
            assert box.tolist() == [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]
            longest = max(box[2] - box[0], box[3] - box[1]) / min(height, width)
            assert 0.65 * MIN_DIAMETER <= longest <= MAX_DIAMETER + 0.01  # a rotated ellipse's box: 0.65-1 x its axis
    assert set(counts) == {0, 1, 2, 3}
    assert len(sizes) >= 3


def test_frames_are_pink_red_mucosa(frames):
    centre = np.concatenate([s.image[96:-96, 96:-96].reshape(-1, 3) for s in frames]).mean(0)
    red, green, blue = centre
    assert red > green + 40 and red > blue + 40, centre
    corner = np.concatenate([s.image[:8, :8].reshape(-1, 3) for s in frames]).mean()
    assert corner < 20  # vignetting: the round field of view leaves the corners dark


def test_video_boxes_follow_the_camera():
    shown = list(polyp_video_frames(frames=6, size=(64, 80), seed=3))
    assert len(shown) == 6 and all(frame.shape == (64, 80, 3) for frame, _, _ in shown)
    assert any(len(boxes) for _, boxes, _ in shown)
    assert all(len(ids) == len(boxes) for _, boxes, ids in shown)
    again = list(polyp_video_frames(frames=6, size=(64, 80), seed=3))
    assert all(a.tobytes() == b.tobytes() for (a, *_), (b, *_) in zip(shown, again))


def test_the_video_is_written_under_a_temporary_name_then_renamed(tmp_path, monkeypatch):
    from foveal.data import polyps

    given = []
    real_writer = cv2.VideoWriter
    monkeypatch.setattr(polyps.cv2, "VideoWriter", lambda path, *args: given.append(path) or real_writer(path, *args))
    boxes = polyps.write_polyp_video(tmp_path / "polyps.mp4", frames=3, size=(32, 48))
    assert len(given) == 1 and given[0] != str(tmp_path / "polyps.mp4") and given[0].endswith(".tmp.mp4")
    assert [p.name for p in tmp_path.iterdir()] == ["polyps.mp4"] and len(boxes) == 3
    assert cv2.VideoCapture(str(tmp_path / "polyps.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 3


def test_tasks_read_polyps():
    detection = load_detect_data("polyps", strict=True, val_fraction=0.2)
    assert detection.classes == [POLYP_CLASS]
    assert [len(detection.splits[s]) for s in ("train", "val", "test")] == [160, 40, 40]
    semantic = load_segment_data(SegmentConfig(data="polyps"), "semantic")
    assert semantic.classes == ["background", POLYP_CLASS]
    item = semantic.splits["val"][0]
    assert set(np.unique(read_labels(item, 2)).tolist()) <= {0, 1}
    assert item.pixels.tobytes() == detection.splits["val"][0].pixels.tobytes()  # the same frames for both tasks
    instances = load_segment_data(SegmentConfig(data="polyps"), "instance")
    assert instances.splits["train"][0].masks is not None


def test_detect_and_segment_train_on_polyps(monkeypatch, tmp_path):
    # the tasks' own data=polyps branch, with fewer frames than the default set so one epoch is quick
    monkeypatch.setattr("foveal.tasks.detect.task.polyps_detection_data", lambda: polyps_detection_data(8, 4))
    monkeypatch.setattr("foveal.tasks.segment.common.polyps_segmentation_data",
                        lambda instances: polyps_segmentation_data(8, 4, instances))
    detect = foveal.train("detect", data="polyps", model="yolo_n", project=tmp_path, name="detect", **QUICK_RUN)
    segment = foveal.train("segment", data="polyps", model="unet", width=8, depth=2, project=tmp_path, name="segment",
                           **QUICK_RUN)
    assert len(detect.history) == 1 and "map" in detect.metrics
    assert len(segment.history) == 1 and "miou" in segment.metrics


# ---- the Kvasir-SEG / CVC-ClinicDB layout: ROOT/images/*.jpg + ROOT/masks/*.jpg, masks 0/255 ----------------

BLOBS = {  # stem: blobs as (x1, y1, x2, y2), filled rectangles in the mask
    "a": [(10, 8, 30, 24)],
    "b": [(4, 30, 20, 60), (40, 10, 74, 40)],
    "c": [(50, 20, 70, 50)],
    "d": [(8, 8, 40, 28), (56, 44, 76, 60)],
}


@pytest.fixture
def kvasir(tmp_path):
    """tmp/kvasir/images/<stem>.jpg (80x64) and tmp/kvasir/masks/<stem>.jpg: 0/255 JPEG masks, one of them RGB
    as Kvasir-SEG's are, and a 2x2 speck that is no object."""
    root = tmp_path / "kvasir"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for stem, blobs in BLOBS.items():
        mask = np.zeros((64, 80), np.uint8)
        for x1, y1, x2, y2 in blobs:
            mask[y1:y2, x1:x2] = 255
        image = np.clip(rng.normal(110, 20, (64, 80, 3)) + (mask[..., None] > 0) * 90, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{stem}.jpg", quality=90)
        saved = Image.fromarray(mask).convert("RGB") if stem == "b" else Image.fromarray(mask)
        saved.save(root / "masks" / f"{stem}.jpg", quality=90)
    speck = np.asarray(Image.open(root / "masks" / "c.jpg")).copy()
    speck[2:4, 2:4] = 255
    Image.fromarray(speck).save(root / "masks" / "c.jpg", quality=100)
    return root


def expected_mask(stem: str) -> np.ndarray:
    mask = np.zeros((64, 80), np.uint8)
    for x1, y1, x2, y2 in BLOBS[stem]:
        mask[y1:y2, x1:x2] = 1
    return mask


def boxes_by_stem(data) -> dict:
    return {item.image.rsplit("/", 1)[-1][:-4]: sorted(item.boxes.tolist())
            for items in data.splits.values() for item in items}


def test_mask_boxes_are_the_blobs_and_skip_specks():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 3:9] = 1
    mask[10:18, 20:29] = 1
    mask[0, 29] = mask[19, 0] = 1  # single pixels: specks
    assert sorted(mask_boxes(mask).tolist()) == [[3, 2, 9, 6], [20, 10, 29, 18]]
    assert mask_boxes(np.zeros((5, 5), np.uint8)).shape == (0, 4)


def test_detect_reads_boxes_from_kvasir_masks(kvasir):
    expected = {stem: sorted(map(list, blobs)) for stem, blobs in BLOBS.items()}
    folder = load_detection_data(str(kvasir), strict=True, val_fraction=0.25)
    assert folder.classes == ["foreground"] and len(folder.splits["val"]) == 1
    assert boxes_by_stem(folder) == expected
    as_masks = load_detection_data(f"masks:{kvasir}/images,{kvasir}/masks", strict=True)
    assert boxes_by_stem(as_masks) == expected
    (kvasir / "masks" / "classes.txt").write_text("background\npolyp\n")
    assert load_detection_data(str(kvasir), strict=True).classes == ["polyp"]


def test_segment_reads_kvasir_masks_as_binary(kvasir):
    cfg = SegmentConfig(data=str(kvasir), val_fraction=0.25)
    data = load_segment_data(cfg, "semantic")
    assert cfg.binary_masks and data.classes == ["background", "foreground"]
    for item in data.splits["train"] + data.splits["val"]:
        stem = item.mask.rsplit("/", 1)[-1][:-4]
        labels = read_labels(item, 2, binary=True)
        speck = (slice(2, 4), slice(2, 4)) if stem == "c" else (slice(0, 0), slice(0, 0))
        labels[speck] = 0  # segmentation keeps the speck: its pixels are mask pixels
        assert np.array_equal(labels, expected_mask(stem)), stem


def test_detect_trains_on_a_kvasir_folder(kvasir, tmp_path):
    run = foveal.train("detect", data=str(kvasir), model="yolo_n", project=tmp_path, name="k", **QUICK_RUN)
    assert len(run.history) == 1 and "map" in run.metrics


def test_segment_trains_on_a_kvasir_folder_and_records_binary_masks(kvasir, tmp_path):
    run = foveal.train("segment", data=str(kvasir), model="unet", width=8, depth=2, project=tmp_path, name="k",
                       **{**QUICK_RUN, "imgsz": 32})
    assert yaml.safe_load((run.run_dir / "config.yaml").read_text())["binary_masks"] is True


def test_a_plain_folder_of_class_index_masks_is_refused(kvasir):
    for stem in BLOBS:
        Image.fromarray(expected_mask(stem)).save(kvasir / "masks" / f"{stem}.jpg", quality=100)  # values 0 and 1
    with pytest.raises(FovealError, match="its masks hold class indices.*read as masks:"):
        load_segment_data(SegmentConfig(data=str(kvasir)), "semantic")
    with pytest.raises(FovealError, match="no object in any mask"):
        load_detection_data(str(kvasir), strict=True)


def test_a_missing_mask_is_a_one_line_error(kvasir, tmp_path):
    (kvasir / "masks" / "b.jpg").unlink()
    with pytest.raises(FovealError, match=r"b\.jpg: no mask"):
        load_detection_data(str(kvasir), strict=True)
    result = run_cli("detect", "train", f"data={kvasir}", "strict=true", "epochs=1", f"project={tmp_path}/runs")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "b.jpg: no mask" in result.stderr
