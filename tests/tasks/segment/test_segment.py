"""The segment task end to end through the CLI: train, val, predict (images, tiles, video), info, bad input."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import foveal
from foveal.data.segment_dataset import SegmentAugment, SemanticDataset, augment_pair
from foveal.data.segmentation import IGNORE_INDEX, MaskedImage
from foveal.losses.segmentation import segmentation_loss, soft_dice_loss

from tests.conftest import run_cli
from tests.test_cli import main_in_process

CLASSES = ["background", "square", "disc"]
TINY = ["model=unet", "width=8", "depth=2", "imgsz=32", "batch=8", "workers=0"]


def write_mask_set(folder, count: int, size: int = 32, seed: int = 0):
    """folder/images/*.png and folder/masks/*.png: a red square (class 1) and a blue disc (class 2)
    on grey noise, with an exact index mask; classes.txt beside them."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        image = np.clip(128 + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        x, y, s = rng.integers(0, size - 12, 2).tolist() + [int(rng.integers(6, 12))]
        mask[y:y + s, x:x + s] = 1
        cx, cy, r = rng.integers(6, size - 6, 2).tolist() + [int(rng.integers(3, 7))]
        mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 2
        image[mask == 1] = (200, 40, 40)
        image[mask == 2] = (40, 40, 200)
        Image.fromarray(image).save(folder / "images" / f"{i:03d}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i:03d}.png")
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")


@pytest.fixture(scope="module")
def mask_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("segdata")
    write_mask_set(root / "train", 64, seed=0)
    write_mask_set(root / "val", 16, seed=1)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    data = f"masks:{root}/train/images,{root}/train/masks;{root}/val/images,{root}/val/masks"
    return root, data


@pytest.fixture(scope="module", params=["off", "bf16"])  # both precision paths, whatever this CPU would choose
def trained(mask_data, tmp_path_factory, request):
    root, data = mask_data
    project = tmp_path_factory.mktemp("runs")
    result = run_cli("segment", "train", f"data={data}", f"classes={root}/classes.txt", *TINY, "epochs=6", "plots=true",
                     "lr=1e-2", f"amp={request.param}", f"project={project}", "name=unet")
    assert result.returncode == 0, result.stderr
    return project / "segment" / "unet", data, project


def test_unet_learns_on_mask_folders(trained):
    run_dir, _, _ = trained
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    history = [dict(zip(header, map(float, row.split(",")))) for row in rows[1:]]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    # always predicting background scores mIoU ~0.28 here (background IoU ~0.85, the shapes 0)
    assert max(h["miou"] for h in history) > 0.6
    assert (run_dir / "report.html").stat().st_size > 10_000


def test_val_reproduces_training_metrics(trained, mask_data):
    run_dir, data, project = trained
    result = run_cli("segment", "val", f"weights={run_dir}/best.safetensors", f"data={data}",
                     f"classes={mask_data[0]}/classes.txt", f"project={project}", "name=val")
    assert result.returncode == 0, result.stderr
    measured = json.loads((project / "segment" / "val" / "metrics.json").read_text())
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    best = max((dict(zip(header, map(float, r.split(",")))) for r in rows[1:]), key=lambda h: h["miou"])
    for key in ("miou", "dice", "pixel_acc"):
        assert measured[key] == pytest.approx(best[key], abs=1e-9), key


def test_track_refuses_a_semantic_model(trained, mask_data, tmp_path, capsys, request):
    if request.node.callspec.params["trained"] != "off":
        pytest.skip("one precision path is enough: the refusal reads the weights' metadata")
    run_dir, _, _ = trained
    result = main_in_process(capsys, "segment", "track", f"weights={run_dir}/best.safetensors",
                     f"source={mask_data[0]}/val/images", f"project={tmp_path}")
    assert result.returncode == 2 and "track: unet finds no objects to follow" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "segment").exists()


def test_instance_keys_refused_by_a_semantic_model(trained, mask_data, tmp_path, capsys, request):
    if request.node.callspec.params["trained"] != "off":
        pytest.skip("one precision path is enough: the refusal reads the weights' metadata")
    run_dir, data, _ = trained
    for key in ("save_json", "mosaic"):
        value = "true" if key == "save_json" else "0.5"
        result = main_in_process(capsys, "segment", "val", f"weights={run_dir}/best.safetensors", f"data={data}",
                                 f"classes={mask_data[0]}/classes.txt", f"{key}={value}", f"project={tmp_path}")
        assert result.returncode == 2 and f"{key}: not for unet, a semantic model" in result.stderr, result.stderr


def test_onnx_export_scores_and_predicts_as_pytorch(trained, mask_data, request):
    if request.node.callspec.params["trained"] != "off":
        pytest.skip("one precision path is enough: the export is of the trained weights either way")
    run_dir, data, project = trained
    classes = f"classes={mask_data[0]}/classes.txt"
    result = run_cli("segment", "export", f"weights={run_dir}/best.safetensors", "dynamic=true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run_dir / "best.onnx").is_file() and "any batch" in result.stdout
    scores = {weights: foveal.val("segment", weights=run_dir / weights, data=data, classes=classes.split("=")[1],
                                  project=project, verbose=False).metrics for weights in ("best.safetensors", "best.onnx")}
    for key in ("miou", "dice", "pixel_acc"):
        assert scores["best.onnx"][key] == pytest.approx(scores["best.safetensors"][key], abs=1e-3), key
    image = mask_data[0] / "val/images/000.png"
    masks = [foveal.predict("segment", weights=run_dir / weights, source=image)[0]
             for weights in ("best.safetensors", "best.onnx")]
    assert masks[0].predictions[0]["pixels"] == masks[1].predictions[0]["pixels"]
    np.testing.assert_array_equal(masks[0].mask, masks[1].mask)
    # any batch and size (val's and predict's are 32 px): three 96 x 64 images labelled as PyTorch labels them
    from foveal.engine.checkpoint import load_trained

    model, exported = (load_trained(run_dir / weights, "segment", torch.device("cpu"))[0]
                       for weights in ("best.safetensors", "best.onnx"))
    images = torch.rand(3, 3, 96, 64)
    with torch.no_grad():
        expected, got = model(images), exported(images)
    assert got.shape == expected.shape
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.999


def test_predict_writes_overlays_masks_and_polygons(trained, mask_data, tmp_path):
    run_dir, _, project = trained
    root, _ = mask_data
    big = np.tile(np.asarray(Image.open(root / "val/images/000.png")), (3, 3, 1))  # 96 px: 3 x imgsz -> tiles
    Image.fromarray(big).save(tmp_path / "big.png")
    for name in ("000.png", "001.png"):
        (tmp_path / name).write_bytes((root / "val/images" / name).read_bytes())
    result = run_cli("segment", "predict", f"weights={run_dir}/best.safetensors", f"source={tmp_path}",
                     f"project={project}", "name=pred")
    assert result.returncode == 0, result.stderr
    out = project / "segment" / "pred"
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 3
    small = next(p for p in predictions if p["file_name"].endswith("000.png"))
    mask = np.asarray(Image.open(out / "masks" / "000.png"))
    truth = np.asarray(Image.open(root / "val/masks/000.png"))
    assert Image.open(out / "masks" / "000.png").mode == "P" and mask.shape == truth.shape
    # a trained model finds the shapes: an all-background model would score 0 here (and > 0.8 pixel accuracy)
    foreground_iou = [((mask == k) & (truth == k)).sum() / ((mask == k) | (truth == k)).sum() for k in (1, 2)]
    assert np.mean(foreground_iou) > 0.4, foreground_iou
    assert sum(small["pixels"].values()) == truth.size
    assert set(small["polygons"]) <= {"square", "disc"}
    assert np.asarray(Image.open(out / "masks" / "big.png")).shape == big.shape[:2]
    assert (out / "big.jpg").is_file()


def test_predict_video(trained, mask_data, tmp_path):
    run_dir, _, project = trained
    root, _ = mask_data
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(5):
        writer.write(cv2.imread(str(root / "val/images" / f"{i:03d}.png")))
    writer.release()
    result = run_cli("segment", "predict", f"weights={run_dir}/best.safetensors", f"source={video}",
                     f"project={project}", "name=video")
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(project / "segment" / "video" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert len(json.loads((project / "segment" / "video" / "predictions.json").read_text())) == 5


def test_mask_of_wrong_size_is_one_line_error(tmp_path):
    write_mask_set(tmp_path / "d", 4)
    Image.fromarray(np.zeros((20, 32), np.uint8)).save(tmp_path / "d/masks/002.png")
    result = run_cli("segment", "train", f"data=masks:{tmp_path}/d/images,{tmp_path}/d/masks", *TINY, "epochs=1",
                     f"project={tmp_path}/runs", "strict=true")
    assert result.returncode == 2
    assert "002.png" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_mask_value_outside_classes_is_one_line_error(tmp_path):
    write_mask_set(tmp_path / "d", 4)
    mask = np.zeros((32, 32), np.uint8)
    mask[:4, :4] = 7
    Image.fromarray(mask).save(tmp_path / "d/masks/001.png")
    result = run_cli("segment", "train", f"data=masks:{tmp_path}/d/images,{tmp_path}/d/masks", *TINY, "epochs=1",
                     f"project={tmp_path}/runs", "val_fraction=0.5")
    assert result.returncode == 2
    assert "001.png" in result.stderr and "7" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("model", ["deeplabv3plus_resnet18", "yolo_n-seg", "maskrcnn_resnet18_fpn"])
def test_width_on_a_model_other_than_our_unets_is_refused(model):
    with pytest.raises(foveal.FovealError) as refused:
        foveal.train("segment", data="shapes", model=model, width=8, depth=3, epochs=1)
    assert str(refused.value) == f"width, depth: only unet and resunet take these, not {model}"


def test_info_prints_layers():
    result = run_cli("segment", "info", "model=unet", "imgsz=64", "width=8", "num_classes=3")
    assert result.returncode == 0, result.stderr
    assert "GMACs" in result.stdout and "3x64x64" in result.stdout



def test_info_of_a_two_stage_model_says_its_heads_depend_on_the_image():
    from foveal.inspect.info import data_dependent_note
    from foveal.registry import create_model

    assert "proposal" in data_dependent_note(create_model("maskrcnn_resnet18_fpn", "segment", num_classes=2, imgsz=64))
    assert data_dependent_note(create_model("unet", "segment", num_classes=2, width=8)) == ""


# ---- pieces: losses and augmentation ------------------------------------------------------------

def test_cross_entropy_term_equals_torch_with_ignore_and_weights():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    target[0, :2] = IGNORE_INDEX
    weights = torch.tensor([0.5, 1.0, 2.0, 3.0])
    _, parts = segmentation_loss(logits, target, dice_weight=0, class_weights=weights)
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE_INDEX)
    assert parts["ce"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_pixels():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    ce = segmentation_loss(logits, target, dice_weight=0)[0]
    assert segmentation_loss(logits, target, dice_weight=0, focal_gamma=1e-9)[0].item() == pytest.approx(ce.item())
    assert segmentation_loss(logits, target, dice_weight=0, focal_gamma=2.0)[0] < ce


def test_binary_head_uses_bce():
    torch.manual_seed(2)
    logits, target = torch.randn(2, 1, 8, 8), torch.randint(0, 2, (2, 8, 8))
    _, parts = segmentation_loss(logits, target, dice_weight=0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target.float())
    assert parts["ce"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_dice_is_zero_for_a_perfect_prediction_and_high_for_a_wrong_one():
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, 4:12, 4:12] = 1
    onehot = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
    valid = torch.ones_like(target, dtype=torch.bool)
    assert soft_dice_loss(onehot, onehot, valid).item() == pytest.approx(0.0, abs=0.02)
    assert soft_dice_loss(1 - onehot, onehot, valid).item() > 0.95


def test_augmentation_moves_masks_with_pixels():
    rng = np.random.default_rng(0)
    image = np.zeros((40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    image[10:20, 5:15] = 255
    mask[10:20, 5:15] = 1
    aug = SegmentAugment(scale=0.3, translate=0.2, degrees=30, hflip=0.5, vflip=0.5, hsv_h=0, hsv_s=0, hsv_v=0)
    for _ in range(10):
        out, masks = augment_pair(image, mask[None], 32, aug, rng, IGNORE_INDEX)
        bright = out.max(axis=2) > 128
        assert set(np.unique(masks[0])) <= {0, 1, IGNORE_INDEX}  # nearest neighbour: no blended values
        assert (bright == (masks[0] == 1)).mean() > 0.97


def test_letterboxed_mask_pads_with_ignore():
    item = MaskedImage("", "", 48, 24, np.zeros((24, 48, 3), np.uint8), np.ones((24, 48), np.uint8))
    image, mask, meta = SemanticDataset([item], 2, 32)[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    assert (mask == IGNORE_INDEX).sum() == 32 * 16 and (mask == 1).sum() == 32 * 16
    assert meta["scale"] == pytest.approx(32 / 48)


# ---- instance segmentation (Mask R-CNN) through the same commands ---------------------------------

@pytest.mark.parametrize("augment", [None, SegmentAugment()])
def test_instance_sample_of_an_image_without_objects(augment):
    from foveal.data.detection import ImageAnnotations
    from foveal.data.segment_dataset import InstanceDataset

    empty = ImageAnnotations("", 40, 30, pixels=np.zeros((30, 40, 3), np.uint8), masks=np.zeros((0, 30, 40), bool))
    image, target = InstanceDataset([empty], 32, augment)[0]
    assert image.shape == (3, 32, 32) and target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 32, 32)

def test_instance_mosaic_moves_each_mask_with_its_pixels():
    """A mosaic of four scenes whose objects are each one flat colour: every mask of the output covers pixels of
    its own object's colour (and the boxes are the masks' bounds), in the epochs before close_mosaic only."""
    from foveal.data.detection import ImageAnnotations
    from foveal.data.segment_dataset import InstanceDataset

    items = []
    for k in range(4):
        image = np.zeros((60, 80, 3), np.uint8)
        masks = np.zeros((2, 60, 80), bool)
        masks[0, 5:25, 10 + 10 * k:40 + 10 * k], masks[1, 35:55, 5:30] = True, True
        image[masks[0]], image[masks[1]] = (200, 40 * k, 0), (0, 40 * k, 200)
        items.append(ImageAnnotations("", 80, 60, np.zeros((2, 4), np.float32), np.array([0, 1]),
                                      np.zeros(2, bool), image, masks))
    augment = SegmentAugment(scale=0.2, translate=0.1, degrees=0, hflip=0.5, vflip=0, hsv_h=0, hsv_s=0, hsv_v=0,
                             mosaic=1.0)
    dataset = InstanceDataset(items, 96, augment, mosaic_epochs=1)
    torch.manual_seed(0)
    many = 0
    for i in range(8):
        image, target = dataset[i % 4]
        pixels = image.permute(1, 2, 0).numpy().astype(int)
        for mask, label, box in zip(target["masks"].numpy().astype(bool), target["labels"], target["boxes"]):
            colours = pixels[mask]
            own = colours[:, 0] > 150 if label == 0 else colours[:, 2] > 150
            assert own.mean() > 0.85  # (the image is resampled smoothly, the mask by nearest: edges blend)
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        many = max(many, len(tiles(pixels)))
    assert many > 1  # objects of several images in one sample: mosaics
    dataset.set_epoch(1)  # closed: one image each
    assert all(len(tiles(dataset[i][0].permute(1, 2, 0).numpy().astype(int))) <= 1 for i in range(4))


def tiles(pixels: np.ndarray) -> set[int]:
    """The images k whose objects' colours ((200, 40k, 0) and (0, 40k, 200)) show in a sample."""
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    return {g // 40 for r, g, b in colours if (r, b) in ((200, 0), (0, 200)) and g % 40 == 0}


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    """A COCO data set with compressed-RLE masks of 64 px synthetic scenes (written by write_coco)."""
    from foveal.data.detection import DetectionData, ImageAnnotations
    from foveal.data.formats.coco import write_coco
    from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set

    def items(n, seed):
        return [ImageAnnotations("", 64, 64, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image, s.masks)
                for s in make_scene_set(n, 64, seed, min_objects=1, max_objects=3, min_scale=0.3)]

    folder = tmp_path_factory.mktemp("coco") / "set"
    write_coco(DetectionData(list(SHAPE_CLASSES), {"train": items(6, 1), "val": items(3, 2)}), folder)
    return folder


def test_mask_rcnn_trains_evaluates_and_predicts(tiny_coco, tmp_path):
    run = foveal.train("segment", data=f"coco:{tiny_coco}", model="maskrcnn_resnet18_fpn", imgsz=64, batch=2,
                       epochs=1, lr=1e-4, max_det=20, workers=0, verbose=False, project=tmp_path, name="mrcnn")
    rows = (run.run_dir / "metrics.csv").read_text().splitlines()
    row = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert 0 < float(row["train_loss_mask"]) < 10 and "mask_map" in row and "map" in row
    again = foveal.val("segment", weights=run.best, project=tmp_path, verbose=False, batch=2, max_det=20)
    for key in ("mask_map", "mask_map50", "map"):  # the saved weights score what training scored
        assert again.metrics[key] == pytest.approx(float(row[key]), abs=1e-9), key
    assert (run.run_dir / "report.html").is_file()

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(next((tiny_coco / "val").iterdir()).read_bytes())
    (result,) = foveal.predict("segment", weights=run.best, source=images, conf=0.0, max_det=5, project=tmp_path,
                               name="pred", save=True)
    results = result.predictions
    assert len(results) == 5 and all(r["area"] >= 0 and "segmentation" in r for r in results)
    assert result.masks.shape == (5, *result.orig_shape) and len(result.boxes) == 5
    assert [int(r["area"]) for r in results] == result.masks.sum((1, 2)).tolist()
    assert (tmp_path / "segment" / "pred" / "a.jpg").is_file()

    # track: the same image as a 4-frame video; each object's mask travels with its id (an untrained model's
    # scores are low: the thresholds let every detection start a track, and match_thresh=1 lets a track take
    # one whose IoU the tracker weighs by its score, as ByteTrack does)
    video = tmp_path / "still.mp4"
    frames = [cv2.imread(str(images / "a.png"))] * 4
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    tracked = foveal.run("segment", "track", weights=run.best, source=str(video), conf=0.0, max_det=5,
                         track_low_thresh=0.0, track_high_thresh=0.0, new_track_thresh=0.0, match_thresh=1.0,
                         project=tmp_path,
                         name="track", verbose=False)
    assert tracked and all(r["track_id"] >= 1 and "segmentation" in r and r["area"] >= 0 for r in tracked)
    first = {r["track_id"]: r["area"] for r in tracked if r["frame"] == 0}
    later = {r["track_id"]: r["area"] for r in tracked if r["frame"] == 3}
    assert first and set(first) & set(later) and all(later[k] == first[k] for k in set(first) & set(later))
    assert (tmp_path / "segment" / "track" / "still.mp4").is_file()
    assert (tmp_path / "segment" / "track" / "tracks.csv").is_file()
