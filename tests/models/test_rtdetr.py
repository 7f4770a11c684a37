"""The RT-DETR-style detector: the shapes of every stage, Hungarian matching, denoising queries, an ImageNet
ResNet's weights through `pretrained=`, that it learns a few scenes, and ONNX export without NMS."""

import itertools

import numpy as np
import pytest
import torch
import torchvision
from torchvision.ops import box_iou

import foveal
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.engine.onnx_export import export_onnx
from foveal.engine.onnx_runtime import load_onnx, read_onnx_meta
from foveal.engine.transfer import load_pretrained, prefixes_outside_backbone
from foveal.models.detect import rtdetr
from foveal.models.detect.rtdetr_loss import hungarian_match
from tests.conftest import box_targets

TINY = dict(hidden=32, heads=4, ffn=64, num_queries=20, decoder_layers=2, denoising=12)
LEARNER = dict(hidden=64, heads=4, ffn=128, num_queries=30, decoder_layers=2, denoising=20)
SIZE = 64  # the learning test's scenes
STEPS = 100  # loss and boxes settle from about 80 on


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only waits


def test_variants_are_registered_and_nms_free():
    assert {"rtdetr_r18", "rtdetr_r34", "rtdetr_r50"} <= set(foveal.list_models("detect"))
    model = foveal.create_model("rtdetr_r18", "detect", num_classes=6)
    assert not model.exports_nms and 10e6 < sum(p.numel() for p in model.parameters()) < 20e6
    assert {"lr", "clip_grad"} <= set(foveal.registry.get_model_entry("rtdetr_r18", "detect").defaults)


def test_every_stage_has_its_shape():
    torch.manual_seed(0)
    model = rtdetr.RTDETR(num_classes=3, **TINY).eval()
    images = torch.rand(2, 3, 64, 96)
    backbone = model.backbone(images)
    assert [tuple(m.shape) for m in backbone] == [(2, 128, 8, 12), (2, 256, 4, 6), (2, 512, 2, 3)]
    maps = model.encoder(backbone)
    assert [tuple(m.shape) for m in maps] == [(2, 32, 8, 12), (2, 32, 4, 6), (2, 32, 2, 3)]
    queries, box_logits, logits, boxes = model.decoder.select(maps)
    assert queries.shape == (2, 20, 32) and box_logits.shape == (2, 20, 4)
    assert logits.shape == (2, 20, 3) and boxes.shape == (2, 20, 4)
    # the chosen queries are the positions with the best class scores
    memory = torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)
    best = model.decoder.memory_scores(model.decoder.memory(memory)).max(-1).values
    torch.testing.assert_close(logits.max(-1).values.sort(1).values, best.topk(20, 1).values.sort(1).values)
    layer_logits, layer_boxes, _, _ = model.decoder(maps)
    assert layer_logits.shape == (1, 2, 20, 3) and layer_boxes.shape == (1, 2, 20, 4)  # eval: the last layer only
    rows = model.export_module()(images)
    assert rows.shape == (2, model.max_det, 6)
    assert (rows[:, :60, 4] >= 0).all() and (rows[:, 60:, 4] == -1).all()  # 20 queries x 3 classes, then empty
    assert (rows[:, :, :4] >= 0).all() and (rows[..., 0::2] <= 96).all() and (rows[..., 1::2] <= 64).all()
    model.conf = 0.0
    detections = model(images)
    assert [len(d["scores"]) for d in detections] == [60, 60]
    assert set(detections[0]) == {"boxes", "scores", "labels"} and detections[0]["labels"].max() < 3


def test_a_small_input_with_fewer_positions_than_queries_still_gives_every_query():
    model = rtdetr.RTDETR(num_classes=2, **{**TINY, "num_queries": 100}).eval()
    rows = model.export_module()(torch.rand(1, 3, 64, 64))  # 64 + 16 + 4 positions
    assert rows.shape == (1, 300, 6) and (rows[0, :200, 4] >= 0).all()


def test_training_gives_finite_losses_and_gradients_for_every_parameter():
    torch.manual_seed(0)
    model = rtdetr.RTDETR(num_classes=3, **TINY).train()
    images = torch.rand(2, 3, 64, 96)
    losses = model(images, box_targets(([[10, 20, 60, 50], [50, 5, 90, 60]], [2, 0]), ([], [])))  # second empty
    assert set(losses) == {"cls", "l1", "giou"}
    assert all(loss.ndim == 0 and torch.isfinite(loss) and loss > 0 for loss in losses.values())
    sum(losses.values()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    empty = model(images, box_targets(([], []), ([], [])))  # no objects: only the class loss, pushing scores down
    assert empty["l1"] == 0 and empty["giou"] == 0 and empty["cls"] > 0
    with pytest.raises(ValueError, match="targets"):
        model(images)


def test_hungarian_matching_is_the_cheapest_assignment():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        cost = torch.rand(3, 3, generator=generator)
        queries, objects = hungarian_match(cost)
        assert objects.tolist() == [0, 1, 2]
        best = min(itertools.permutations(range(3)), key=lambda p: sum(cost[p[j], j] for j in range(3)))
        assert queries.tolist() == list(best)
    cost = torch.tensor([[5.0, 1.0], [0.0, 9.0], [2.0, 2.0]])  # 3 queries, 2 objects: one query left out
    assert [q.tolist() for q in hungarian_match(cost)] == [[1, 0], [0, 1]]


def test_denoising_queries_are_noised_copies_that_matching_queries_cannot_see():
    torch.manual_seed(0)
    targets = [{"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])},
               {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    noised = rtdetr.denoising_queries(targets, num_classes=3, count=12, label_noise=0.0, box_noise=0.4)
    assert noised["groups"] == 3 and noised["slots"] == 4 and noised["labels"].shape == (2, 12)
    assert noised["labels"][1].tolist() == [0, 3, 0, 3] * 3  # its one object, padding (class 3: none), twice a group
    labels, boxes = noised["labels"][0].view(3, 4), noised["boxes"][0].view(3, 4, 4)
    assert (labels == torch.tensor([1, 2, 1, 2])).all()
    shift = (boxes - targets[0]["boxes"].repeat(2, 1)).abs()  # (groups, slots, 4)
    sides = targets[0]["boxes"][:, 2:].repeat(1, 2).repeat(2, 1)  # each corner moves by at most its side share
    assert (shift[:, :2] <= 0.4 * sides[:2] + 1e-6).all()  # positives: within the noise
    assert (shift[:, 2:].max(-1).values > 0).all()
    blocked = rtdetr.attention_mask(noised, matching=5, device="cpu")
    assert blocked.shape == (17, 17)
    assert blocked[12:, :12].all() and not blocked[12:, 12:].any()  # matching queries see only each other
    assert not blocked[:4, :4].any() and blocked[:4, 4:12].all() and not blocked[:12, 12:].any()
    assert rtdetr.denoising_queries([{"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}],
                                    3, 12, 0.5, 1.0) is None


def test_an_imagenet_resnet18_file_loads_into_the_backbone(tmp_path):
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        imagenet.layer4[1].bn2.running_mean.uniform_()  # statistics too: not their fresh defaults
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    model = rtdetr.RTDETR(num_classes=3, **TINY)
    note = load_pretrained(model, tmp_path / "resnet18.pth", "rtdetr_r18", prefixes_outside_backbone(model))
    assert f"loaded {len(imagenet.state_dict()) - 2}/" in note  # every tensor but the classifier's (fc.weight, .bias)
    own = model.state_dict()
    for key, value in imagenet.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(own[f"backbone.{key}"], value), key
    assert prefixes_outside_backbone(model) == ["encoder.", "decoder."]


@pytest.fixture(scope="module")
def trained():
    """(model, images (4, 3, 64, 64), targets) of a tiny rtdetr trained STEPS steps on 4 scenes."""
    torch.manual_seed(0)
    scenes = make_scene_set(4, SIZE, seed=3, min_objects=1, max_objects=2, min_scale=0.25)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    targets = [{"boxes": torch.from_numpy(s.boxes).float(), "labels": torch.from_numpy(s.labels)} for s in scenes]
    model = rtdetr.RTDETR(len(SHAPE_CLASSES), **LEARNER)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for _ in range(STEPS):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), images, targets, losses


def test_learns_the_scenes_it_trains_on(trained):
    model, images, targets, losses = trained
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    model.conf, model.max_det = 0.5, 300
    with torch.inference_mode():
        detections = model(images)
    everything = torch.cat([t["boxes"] for t in targets])
    mean_box = everything.mean(0, keepdim=True)  # the trivial predictor: one box where objects are on average
    found, trivial = [], []
    for detection, target in zip(detections, targets):
        for box, label in zip(target["boxes"], target["labels"]):
            same_class = detection["boxes"][detection["labels"] == label]
            found.append(box_iou(box[None], same_class).max().item() if len(same_class) else 0.0)
            trivial.append(box_iou(box[None], mean_box).item())
        # one answer an object, and no NMS to make it so: matching taught the other queries to stay low
        # (they score under 0.45 here, the objects' queries over 0.75)
        assert len(detection["scores"]) == len(target["labels"])
    assert np.mean(found) > 0.7 and np.mean(found) > np.mean(trivial) + 0.4, (found, trivial)


def test_onnx_graph_ends_with_topk_rows_and_runs_in_the_models_place(trained, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    import onnx

    model, images, _, _ = trained
    meta = {"task": "detect", "model": "rtdetr_r18", "model_kwargs": {"num_classes": len(SHAPE_CLASSES), **LEARNER}}
    path = export_onnx(model, meta, tmp_path / "rtdetr.onnx", SIZE, dynamic=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "NonMaxSuppression" not in ops and {"TopK", "GridSample"} <= ops
    assert read_onnx_meta(path)["onnx"]["nms"] is False
    session = ort.InferenceSession(str(path))
    assert len(session.get_outputs()) == 1
    with torch.inference_mode():
        expected = model.export_module()(images)
    for image, wanted in zip(images, expected):
        (rows,) = session.run(None, {"images": image[None].numpy()})
        assert rows.shape == (1, model.max_det, 6)
        np.testing.assert_allclose(rows[0], wanted.numpy(), rtol=1e-3, atol=1e-3)
    exported = load_onnx(path, read_onnx_meta(path), torch.device("cpu"))
    for m in (model, exported):
        m.conf, m.max_det = 0.3, 5
    with torch.inference_mode():
        for wanted, got in zip(model(images), exported(images), strict=True):
            assert 0 < len(got["scores"]) == len(wanted["scores"]) <= 5
            torch.testing.assert_close(got["boxes"], wanted["boxes"], rtol=1e-3, atol=1e-3)
            assert torch.equal(got["labels"], wanted["labels"])


def test_trains_from_an_imagenet_file_and_validates_through_the_detect_task(tmp_path):
    from foveal.data.detection import DetectionData, ImageAnnotations
    from foveal.data.formats.yolo import write_yolo

    items = [ImageAnnotations("", SIZE, SIZE, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
             for s in make_scene_set(8, SIZE, seed=5, min_objects=1, max_objects=2, min_scale=0.25)]
    data = write_yolo(DetectionData(list(SHAPE_CLASSES), {"train": items[:6], "val": items[6:]}), tmp_path / "yolo")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    run = foveal.train("detect", data=str(data), model="rtdetr_r18", imgsz=SIZE, epochs=1, batch=3, amp="off",
                       pretrained=str(tmp_path / "resnet18.pth"), threads=1, workers=0, plots=False,
                       project=tmp_path, name="run", verbose=False)
    config = (run.run_dir / "config.yaml").read_text().splitlines()
    assert "lr: 0.001" in config and "clip_grad: 1.0" in config  # the model's own defaults (the task's lr: 4e-3)
    again = foveal.val("detect", weights=run.run_dir / "best.safetensors", project=tmp_path, verbose=False)
    assert again.metrics["map"] == pytest.approx(run.metrics["map"], abs=1e-9)
