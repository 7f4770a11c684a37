"""The end-to-end yolo (end2end=true, YOLOv10's dual assignment): one anchor per object for the one-to-one
head, duplicates suppressed without NMS once trained, an exported graph with TopK and no NonMaxSuppression
that gives PyTorch's rows, and the option through the engine (weights that rebuild it, refused elsewhere)."""

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import foveal
from foveal.data.detection import DetectionData, ImageAnnotations
from foveal.data.formats.coco import write_coco
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.engine.checkpoint import load_trained, save_weights, trained_meta
from foveal.errors import FovealError
from foveal.metrics.detection import coco_evaluate
from foveal.models.detect import yolo
from foveal.models.detect.yolo_loss import YOLOLoss, assign_targets
from foveal.tasks.detect.task import DetectConfig, DetectTask

IMGSZ = 128
STEPS = 80  # about 10 s on one quiet core: mAP50 1.0, mAP 0.99, one box per object, the next best score 0.03
# (measured; at 60 steps the runner-up boxes scored up to 0.1-0.2, closer to the duplicate check's 0.25)
SCENES = 8
DUPLICATE_IOU, CONFIDENT = 0.5, 0.25  # the test: no two boxes of one object above 0.5 IoU scoring > 0.25


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only waits


def test_one_to_one_assignment_gives_each_object_exactly_one_anchor():
    # three boxes on a 64 x 64 image; every anchor predicts a square of 2 strides
    # around itself and every score is equal, so the alignment ranks anchors by IoU alone
    points, strides = yolo.anchor_grid([(8, 8), (4, 4), (2, 2)], (8, 16, 32), "cpu")
    pred_boxes = torch.cat([points - strides, points + strides], 1)[None]  # (1, A, 4)
    gt_boxes = torch.tensor([[[2.0, 2.0, 22.0, 22.0], [26.0, 26.0, 58.0, 58.0], [0.0, 30.0, 18.0, 62.0]]])
    labels = torch.tensor([[0, 1, 2]])
    for topk, per_object in ((YOLOLoss().topk, 10), (YOLOLoss().one_to_one().topk, 1)):
        result = assign_targets(torch.full((1, len(points), 3), 0.5), pred_boxes, points, gt_boxes, labels,
                                torch.ones(1, 3, dtype=torch.bool), topk=topk)
        owners = result.owners[0][result.foreground[0]]
        assert torch.bincount(owners, minlength=3).tolist() == [per_object] * 3  # ten each, or exactly one
    chosen = result.foreground[0].nonzero()[:, 0]
    assert sorted(result.labels[0, chosen].tolist()) == [0, 1, 2]  # each its own object's class
    # the one anchor is the one of best IoU among those inside the box
    for anchor, owner in zip(chosen, result.owners[0, chosen]):
        iou = box_iou(gt_boxes[0, owner][None], pred_boxes[0])[0]
        x, y = points.T
        x1, y1, x2, y2 = gt_boxes[0, owner]
        inside = (x > x1) & (x < x2) & (y > y1) & (y < y2)
        assert anchor == torch.where(inside, iou, -1).argmax()
    assert result.scores[0].sum(1).count_nonzero() == 3  # the rest learn to score nothing


def test_the_one_to_one_head_trains_on_detached_features():
    torch.manual_seed(0)
    model = yolo.yolo_n(num_classes=3, end2end=True).train()
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 50.0]]), "labels": torch.tensor([2])}]
    losses = model(torch.rand(1, 3, 64, 96), targets)
    assert set(losses) == {"box", "cls", "dfl", "box_o2o", "cls_o2o", "dfl_o2o"}
    sum(value for name, value in losses.items() if name.endswith("_o2o")).backward()
    reached = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert reached == {"one2one"}  # neither the shared network nor the other head
    assert yolo.yolo_n(num_classes=3).exports_nms and not model.exports_nms


def train_scenes(end2end: bool):
    """(model, images, targets) of a yolo_n trained STEPS steps on SCENES scenes, in eval mode."""
    torch.manual_seed(0)
    scenes = make_scene_set(SCENES, IMGSZ, seed=3, min_objects=1, max_objects=3, min_scale=0.2)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    targets = [{"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels)} for s in scenes]
    model = yolo.yolo_n(num_classes=len(SHAPE_CLASSES), end2end=end2end)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.004, weight_decay=0.0)
    for _ in range(STEPS):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), images, scenes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(weights, COCO file, image folder, images (8, 3, 128, 128), their ImageAnnotations) of an end2end yolo_n
    trained on the scenes it is scored on."""
    model, images, scenes = train_scenes(end2end=True)
    root = tmp_path_factory.mktemp("end2end")
    weights = root / "best.safetensors"
    kwargs = {"num_classes": len(SHAPE_CLASSES), "imgsz": IMGSZ, "end2end": True}
    save_weights(weights, model.state_dict(), {"task": "detect", "model": "yolo_n", "model_kwargs": kwargs,
                                               "classes": list(SHAPE_CLASSES), "imgsz": IMGSZ})
    items = [ImageAnnotations("", IMGSZ, IMGSZ, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
             for s in scenes]
    write_coco(DetectionData(list(SHAPE_CLASSES), {"val": items}), root)
    return weights, root / "val.json", root / "val", images, items


def duplicated_objects(outputs: list[dict], items) -> int:
    """Objects with two boxes above CONFIDENT that overlap each other above DUPLICATE_IOU, both on the object."""
    count = 0
    for out, item in zip(outputs, items):
        boxes = out["boxes"][out["scores"] > CONFIDENT]
        on_object = box_iou(torch.from_numpy(item.boxes), boxes) > DUPLICATE_IOU  # (N, K)
        for mine in on_object:
            overlap = box_iou(boxes[mine], boxes[mine]).fill_diagonal_(0)
            count += int((overlap > DUPLICATE_IOU).any())
    return count


def test_learns_and_gives_one_box_per_object_without_nms(trained):
    weights, _, _, images, items = trained
    model = load_trained(weights, "detect", torch.device("cpu"))[0].fuse()
    with torch.inference_mode():
        outputs = model(images)
        # what the margins guard against: the one-to-many head of the same model without NMS (its top pairs)
        cls_logits, _, boxes, _, _ = model.decode(model.head(model.features(images)))
        many = model.unpack_detections(yolo.top_rows(cls_logits.sigmoid(), boxes, images.shape[-2:], 300))
    found = coco_evaluate(items, outputs, list(SHAPE_CLASSES)).stats
    # a trivial predictor: every class, with one score, at the mean object box of these scenes
    mean_box = torch.from_numpy(np.concatenate([item.boxes for item in items]).mean(0))
    trivial = [{"boxes": mean_box.repeat(len(SHAPE_CLASSES), 1), "scores": torch.full((len(SHAPE_CLASSES),), 0.5),
                "labels": torch.arange(len(SHAPE_CLASSES))} for _ in items]
    baseline = coco_evaluate(items, trivial, list(SHAPE_CLASSES)).stats
    # measured: mAP 0.99, the trivial predictor's 0.01
    assert found["map50"] > 0.9 and found["map"] > baseline["map"] + 0.5, (found, baseline)
    assert duplicated_objects(outputs, items) == 0
    assert duplicated_objects(many, items) >= len(items)  # measured: 13 of the 17 objects
    assert all(len(out["scores"]) <= model.max_det and (out["scores"] > model.conf).all() for out in outputs)


def test_the_predictor_times_the_network_apart_and_gives_the_models_boxes(trained):
    weights, _, _, images, _ = trained
    model, meta = load_trained(weights, "detect", torch.device("cpu"))
    model = model.fuse()
    model.conf = 0.25  # predict's
    predictor = DetectTask.trained(DetectConfig(), meta).predictor(model, torch.device("cpu"))
    assert predictor.split  # network, then post-processing: the one-to-one head, then top_rows (no NMS)
    found = predictor.infer((images[0].permute(1, 2, 0) * 255).round().byte().numpy())
    assert predictor.seconds["inference"] > 0 and predictor.seconds["postprocess"] > 0
    with torch.inference_mode():
        expected = model(images[:1])[0]
    assert found["labels"].tolist() == expected["labels"].tolist() and len(found["labels"])
    np.testing.assert_allclose(found["boxes"], expected["boxes"].numpy(), atol=0.02)
    np.testing.assert_allclose(found["scores"], expected["scores"].numpy(), atol=1e-3)


def test_export_ends_with_topk_and_gives_pytorchs_rows(trained, tmp_path):
    import onnx

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    weights, annotations, folder, images, _ = trained
    copy = tmp_path / "best.safetensors"  # export writes beside the weights: not into the shared fixture's folder
    copy.write_bytes(weights.read_bytes())
    foveal.api.run("detect", "export", weights=copy, verbose=False)
    graph = tmp_path / "best.onnx"
    ops = [node.op_type for node in onnx.load(str(graph)).graph.node]
    assert "TopK" in ops and "NonMaxSuppression" not in ops
    model = load_trained(weights, "detect", torch.device("cpu"))[0].fuse()
    session = ort.InferenceSession(str(graph))
    for image in images[:3].split(1):  # a fixed-size graph: one image at a time
        (rows,) = session.run(None, {"images": image.numpy()})
        with torch.inference_mode():
            expected = model.export_module()(image).numpy()
        assert rows.shape == expected.shape == (1, model.max_det, 6)
        # near-ties among the weakest rows may come in either order: compared where scores are apart
        count = int((expected[0, :, 4] > 0.01).sum())
        assert count > 0
        np.testing.assert_allclose(rows[0, :count], expected[0, :count], atol=1e-3, rtol=1e-3)

    # the file read back in the model's place: val and predict score as PyTorch
    data = f"coco:{annotations},{folder}"
    scores = [foveal.val("detect", weights=w, data=data, project=tmp_path, verbose=False).metrics
              for w in (copy, graph)]
    assert scores[0]["map50"] > 0.9 and scores[1]["map"] == pytest.approx(scores[0]["map"], abs=1e-3)


def test_end2end_is_recorded_in_the_weights_and_refused_for_other_models(tmp_path):
    with pytest.raises(FovealError, match="end2end: only yolo_n, yolo_s, yolo_m") as error:
        foveal.train("detect", data="shapes", model="fasterrcnn_resnet18_fpn", end2end=True, project=tmp_path)
    assert "\n" not in str(error.value)
    items = [ImageAnnotations("", 64, 64, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
             for s in make_scene_set(8, 64, seed=1, min_objects=1, max_objects=2, min_scale=0.3)]
    data = DetectionData(list(SHAPE_CLASSES), {"train": items, "val": items[:4]})
    write_coco(data, tmp_path / "coco")
    source = f"coco:{tmp_path / 'coco' / 'train.json'},{tmp_path / 'coco' / 'train'};" \
             f"{tmp_path / 'coco' / 'val.json'},{tmp_path / 'coco' / 'val'}"
    run = foveal.train("detect", data=source, model="yolo_n", end2end=True, imgsz=64, epochs=1, batch=8,
                       amp="off", workers=0, threads=1, project=tmp_path, name="e2e", plots=False, verbose=False)
    best = tmp_path / "detect" / "e2e" / "best.safetensors"
    assert trained_meta(best, "detect")["model_kwargs"]["end2end"] is True
    assert {"train_box_o2o", "train_cls_o2o"} <= set(run.history[0])
    model = load_trained(best, "detect", torch.device("cpu"))[0]
    assert model.end2end and not model.exports_nms
    again = foveal.val("detect", weights=best, data=source, project=tmp_path, verbose=False)
    assert again.metrics["map"] == pytest.approx(run.history[-1]["map"], abs=1e-9)
