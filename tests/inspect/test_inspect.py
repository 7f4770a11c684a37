"""features and explain: the sanity checks of saliency maps on a trained classifier (the evidence lies on
the object, and no longer after the weights are randomised), the layer rules, every method on every
task at tiny sizes, and the one-line errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest

import foveal
from foveal.cli import main
from foveal.data.synthetic import make_scene_set
from foveal.errors import FovealError
from foveal.inspect.explain import overlay

METHODS = ("gradcam", "gradcam++", "scorecam", "eigencam", "saliency")
COLOURS = {"blue": (30, 30, 230), "red": (230, 30, 30)}  # the class is the colour of the one shape
SIDE = 32


def write_png(path: Path, rgb: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def write_coloured_shapes(folder: Path, count: int, seed: int) -> dict[str, np.ndarray]:
    """folder/<colour>/<k>.png: synthetic scenes (textured, cluttered) with one shape of 30-45% of the side,
    painted in its class's colour; returns each file's exact box (x1, y1, x2, y2)."""
    boxes = {}
    for k, scene in enumerate(make_scene_set(count, SIDE, seed, min_objects=1, max_objects=1, min_scale=0.3,
                                             max_scale=0.45)):
        name = list(COLOURS)[k % 2]
        image = scene.image.copy()
        image[scene.masks[0]] = COLOURS[name]
        boxes[write_png(folder / name / f"{k:03d}.png", image)] = scene.boxes[0]
    return boxes


@pytest.fixture(scope="module")
def colour_classifier(tmp_path_factory):
    """(best.safetensors, val folder, val boxes): simple_cnn trained 4 epochs on 400 32 px scenes (top-1 1.0
    on val; about 15 s on 2 cores)."""
    root = tmp_path_factory.mktemp("colours")
    write_coloured_shapes(root / "train", 400, seed=1)
    boxes = write_coloured_shapes(root / "val", 16, seed=2)
    result = foveal.train("classify", data=str(root), model="simple_cnn", imgsz=SIDE, epochs=4, batch=32, lr=3e-3,
                          crop_scale=1.0, amp="off", workers=0, verbose=False, project=str(root / "runs"))
    assert result.metrics["top1"] >= 0.9, result.metrics
    return result.best, root / "val", boxes


def box_concentration(results: list[dict], boxes: dict) -> float:
    """Mean over images of (share of the map's mass inside the object's box) / (the box's share of the image);
    a map of zeros (no positive evidence anywhere) counts as uniform: 1."""
    ratios = []
    for result in results:
        cam = result["cam"]
        x1, y1, x2, y2 = boxes[result["file_name"]].astype(int)
        box_share = (x2 - x1) * (y2 - y1) / cam.size
        ratios.append(cam[y1:y2, x1:x2].sum() / cam.sum() / box_share if cam.sum() else 1.0)
    return float(np.mean(ratios))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps' pixels; 0 when one is constant (a map of zeros)."""
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.std() and b.std() else 0.0


def test_gradcam_lies_on_the_object_and_not_after_randomisation(colour_classifier, tmp_path):
    weights, val, boxes = colour_classifier
    common = dict(source=str(val), method="gradcam", verbose=False, project=str(tmp_path))
    trained = foveal.classify.explain(weights=str(weights), **common)
    # Adebayo et al.'s model randomisation: the same architecture, freshly initialised
    randomised = foveal.classify.explain(model="simple_cnn", imgsz=SIDE, num_classes=2, **common)
    assert [r["target"].split()[0] for r in trained] == [Path(r["file_name"]).parent.name for r in trained]
    on_object, at_random = box_concentration(trained, boxes), box_concentration(randomised, boxes)
    similarity = np.mean([correlation(a["cam"], b["cam"]) for a, b in zip(trained, randomised)])
    zeros = sum(not r["cam"].any() for r in randomised)
    print(f"inside-box concentration: trained {on_object:.2f}x the box's share, random {at_random:.2f}x "
          f"({zeros} of {len(randomised)} random maps all zero); correlation {similarity:.2f}")
    assert on_object > 2.0
    assert at_random < 0.6 * on_object
    assert similarity < 0.5


@pytest.mark.parametrize("method", METHODS)
def test_every_method_maps_the_whole_image_into_0_1(colour_classifier, tmp_path, method):
    weights, val, boxes = colour_classifier
    wide = cv2.resize(cv2.imread(next(iter(boxes))), (56, 40))  # not square: the map must come back to 40 x 56
    source = tmp_path / "wide.png"
    cv2.imwrite(str(source), wide)
    (result,) = foveal.classify.explain(weights=str(weights), source=str(source), method=method, verbose=False,
                                        project=str(tmp_path))
    cam = result["cam"]
    assert cam.shape == (40, 56) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    run = tmp_path / "classify" / "explain"
    assert np.array_equal(np.load(run / "cams" / "wide.npy"), cam)
    # the heatmap at the image's own size and pixels, a colour bar beside it
    drawn = cv2.imread(str(run / "wide.png"))[..., ::-1]
    assert drawn.shape[0] >= 40 and drawn.shape[1] > 56 + 40
    assert np.array_equal(drawn[:40, :56], overlay(cv2.imread(str(source))[..., ::-1], cam))
    assert "wide.png" in (run / "report.html").read_text()


def test_explain_prints_the_target_and_score(colour_classifier, tmp_path, capsys):
    weights, val, _ = colour_classifier
    source = next((val / "red").iterdir())
    foveal.classify.explain(weights=str(weights), source=str(source), target="blue", project=str(tmp_path))
    out = capsys.readouterr().out
    assert f"{source}: blue (class 0), score 0." in out and "gradcam on layer 5: 64 channels of 8x8" in out


def test_resnet18_features_at_the_end_of_each_stage(tmp_path):
    source = write_png(tmp_path / "scene.png", make_scene_set(1, (48, 64), seed=3, min_objects=2)[0].image)
    (result,) = foveal.classify.features(model="resnet18", imgsz=64, source=source, verbose=False,
                                         project=str(tmp_path))
    # the stem (before its max-pooling), then the four stages; the layer4 map is 2 x 2 at 64 px
    assert result["layers"] == {"relu": [64, 32, 32], "layer1": [64, 16, 16], "layer2": [128, 8, 8],
                                "layer3": [256, 4, 4], "layer4": [512, 2, 2]}
    run = tmp_path / "classify" / "features"
    # the 64 most active channels in 8 x 8 tiles, 2 px apart, enlarged by whole factors to about 48 px
    for k, (name, tile) in enumerate(zip(result["layers"], (32 * 2, 16 * 3, 8 * 6, 4 * 12, 2 * 24))):
        assert cv2.imread(str(run / "scene" / f"{k:02d}_{name}.png")).shape == (8 * tile + 14, 8 * tile + 14, 3)
    filters = cv2.imread(str(run / "filters.png"))  # conv1's 64 7 x 7 RGB filters, enlarged 7x
    assert filters.shape == (8 * 49 + 14, 8 * 49 + 14, 3) and not np.array_equal(filters[..., 0], filters[..., 1])
    report = (run / "report.html").read_text()
    assert all(name in report for name in result["layers"]) and "512 x 2 x 2" in report


def test_named_layers_and_their_mistakes(tmp_path):
    source = write_png(tmp_path / "scene.png", make_scene_set(1, SIDE, seed=3)[0].image)
    common = dict(model="cifar_resnet20", imgsz=SIDE, source=source, verbose=False, project=str(tmp_path))
    (result,) = foveal.classify.features(layers="stem, stages.1.0", **common)
    assert result["layers"] == {"stem": [16, 32, 32], "stages.1.0": [32, 16, 16]}
    with pytest.raises(FovealError, match=r"layers: no layer 'stages\.5'.*did you mean 'stages\.\d'.*e\.g\. stages\.0, stages\.1, stages\.2$"):
        foveal.classify.features(layers="stages.5", **common)
    with pytest.raises(FovealError, match="no layer 'fc' with a"):  # a (B, classes) output has no map
        foveal.classify.explain(target_layer="fc", **common)


def test_detector_features_and_explain(trained_detector, tmp_path, capsys):
    weights, _, images = trained_detector
    source = sorted(Path(images).iterdir())[0]
    (features,) = foveal.detect.features(weights=str(weights), source=str(source), verbose=False, project=str(tmp_path))
    assert list(features["layers"]) == ["backbone.stem", *(f"backbone.stages.{k}" for k in range(4))]
    for method in ("gradcam", "eigencam"):
        (result,) = foveal.detect.explain(weights=str(weights), source=str(source), method=method,
                                          project=str(tmp_path))
        assert result["cam"].shape == (100, 150) and result["cam"].max() == pytest.approx(1.0)
        assert result["target"].startswith("detection 0: ")
    assert "on layer backbone.stages.3: " in capsys.readouterr().out
    (predicted,) = foveal.detect.predict(weights=str(weights), source=str(source))
    assert result["score"] == pytest.approx(predicted.boxes.conf.max(), abs=1e-4)  # predict's best box
    with pytest.raises(FovealError, match=r"target: detection 99 asked, but the image has \d+ detections? at conf=0.25"):
        foveal.detect.explain(weights=str(weights), source=str(source), target="99", project=str(tmp_path))
    with pytest.raises(FovealError, match="needs the .safetensors weights"):
        foveal.detect.explain(weights=str(Path(weights).with_suffix(".onnx")), source=str(source))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> str:
    scene = make_scene_set(1, (48, 64), seed=4, min_objects=2, max_objects=3, min_scale=0.3)[0]
    return write_png(tmp_path_factory.mktemp("scene") / "scene.png", scene.image)


@pytest.mark.parametrize("method", METHODS)
def test_random_yolo_and_unet_every_method(scene, tmp_path, method):
    common = dict(source=scene, method=method, verbose=False, project=str(tmp_path))
    # a random YOLO scores every anchor at its 1% prior: conf=0.001 keeps detections to explain
    (detected,) = foveal.detect.explain(model="yolo_n", imgsz=64, num_classes=3, conf=0.001, target="2", **common)
    (segmented,) = foveal.segment.explain(model="unet", width=8, depth=2, imgsz=64, num_classes=3, target="1", **common)
    for result in (detected, segmented):
        assert result["cam"].shape == (48, 64) and 0 <= result["cam"].min() and result["cam"].max() <= 1
    assert detected["target"].startswith("detection 2: ") and segmented["target"].startswith("1 (class 1), ")
    # the U-Net's bottom level (saliency weighs no layer: the input's gradient)
    assert segmented["layer"] == ("input" if method == "saliency" else "encoder.2 32x16x16")


def test_torchvision_detector_and_segmenter(scene, tmp_path):
    common = dict(source=scene, verbose=False, project=str(tmp_path))
    (detected,) = foveal.detect.explain(model="fasterrcnn_resnet18_fpn", imgsz=64, num_classes=3, conf=0.001, **common)
    assert detected["layer"].startswith("model.backbone.body.layer4 ")  # feeds every FPN level
    assert detected["cam"].shape == (48, 64)
    # Mask R-CNN explains a detection as Faster R-CNN does; its features stop at the backbone, not the FPN
    (masked,) = foveal.segment.explain(model="maskrcnn_resnet18_fpn", imgsz=64, num_classes=3, conf=0.001, **common)
    assert masked["target"].startswith("detection 0: ") and masked["layer"].startswith("model.backbone.body.layer4 ")
    (features,) = foveal.segment.features(model="maskrcnn_resnet18_fpn", imgsz=64, num_classes=3, **common)
    assert list(features["layers"]) == [f"model.backbone.body.{name}" for name in
                                        ("relu", "layer1", "layer2", "layer3", "layer4")]
    (features,) = foveal.segment.features(model="unet", width=8, depth=2, imgsz=64, num_classes=3, **common)
    assert features["layers"] == {"encoder.0": [8, 64, 64], "encoder.1": [16, 32, 32], "encoder.2": [32, 16, 16]}


@pytest.mark.parametrize("args, message", [
    (["classify", "explain", "model=simple_cnn", "imgsz=32"], "source: name an image, a folder or a glob for explain"),
    (["classify", "features", "model=simple_cnn", "imgsz=32", "layers=9", "SCENE"],
     "layers: no layer '9' with a (B, C, H, W) output; e.g. 1, 4, 5"),
    (["classify", "explain", "model=simple_cnn", "imgsz=32", "num_classes=3", "target=dog", "SCENE"],
     "target: 'dog' is not a class of this model; name one or give its index 0..2 (0, 1, 2), or auto"),
    (["segment", "explain", "model=unet", "width=8", "depth=2", "imgsz=32", "num_classes=3", "target=3", "SCENE"],
     "target: '3' is not a class of this model"),
    (["detect", "explain", "model=yolo_n", "imgsz=64", "num_classes=3", "conf=0.001", "target=first", "SCENE"],
     "target: a detection's index (0 = the best), or auto; got 'first'"),
    (["detect", "explain", "model=yolo_n", "imgsz=64", "num_classes=3", "target=2", "SCENE"],
     "target: detection 2 asked, but the image has 0 detections at conf=0.25 (none)"),
    (["classify", "explain", "model=simple_cnn", "imgsz=32", "source=film.mp4"], "source: explain looks at images"),
    (["classify", "features", "model=vit_b_16", "imgsz=32", "SCENE"],
     "layers: auto found no stage of (B, C, H, W) maps in vit_b_16; name layers= among its layers with such an "
     "output: conv_proj"),
    (["restore", "explain"], "unknown mode 'explain'"),
])
def test_mistakes_are_one_line(scene, tmp_path, capsys, args, message):
    words = [f"source={scene}" if word == "SCENE" else word for word in args] + [f"project={tmp_path}"]
    assert main(words) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / args[0]).exists()  # refused before any run folder


def test_grad_cam_methods_need_the_inspect_extra(scene, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "pytorch_grad_cam", None)  # as if not installed
    assert main(["classify", "explain", "model=simple_cnn", "imgsz=32", f"source={scene}", f"project={tmp_path}"]) == 2
    assert "method: gradcam needs the inspect extra: pip install 'foveal[inspect]'" in capsys.readouterr().err
    (result,) = foveal.classify.explain(model="simple_cnn", imgsz=32, source=scene, method="saliency", verbose=False,
                                        project=str(tmp_path))
    assert result["cam"].shape == (48, 64)
