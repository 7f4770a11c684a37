"""foveal's YOLO detector: output contract, gradients, task-aligned assignment, and that it learns."""

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import foveal
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.models.detect import yolo
from foveal.models.detect.yolo_loss import YOLOLoss, assign_targets
from tests.conftest import box_targets


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only waits


def test_variants_are_registered_and_grow():
    assert {"yolo_n", "yolo_s", "yolo_m"} <= set(foveal.list_models("detect"))
    sizes = [sum(p.numel() for p in foveal.create_model(name, num_classes=6).parameters())
             for name in ("yolo_n", "yolo_s", "yolo_m")]
    assert 2e6 < sizes[0] < sizes[1] < sizes[2]


def test_raw_output_has_one_map_per_stride():
    model = yolo.yolo_n(num_classes=5).eval()
    raw = model.forward_raw(torch.rand(2, 3, 96, 64))
    assert [tuple(level.shape) for level in raw] == [(2, 64 + 5, 96 // s, 64 // s) for s in (8, 16, 32)]


def test_training_gives_finite_losses_and_gradients_for_every_parameter():
    torch.manual_seed(0)
    model = yolo.yolo_n(num_classes=3).train()
    images = torch.rand(2, 3, 64, 96)
    targets = box_targets(([[10, 20, 60, 50], [50, 5, 90, 60]], [2, 0]), ([], []))  # second image empty
    losses = model(images, targets)
    assert set(losses) == {"box", "cls", "dfl"}
    assert all(loss.ndim == 0 and torch.isfinite(loss) and loss > 0 for loss in losses.values())
    sum(losses.values()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    with pytest.raises(ValueError, match="targets"):
        model(images)


def test_images_without_objects_only_push_scores_down():
    model = yolo.yolo_n(num_classes=3).train()
    losses = model(torch.rand(2, 3, 64, 64), box_targets(([], []), ([], [])))
    assert losses["box"] == 0 and losses["dfl"] == 0
    assert torch.isfinite(losses["cls"]) and losses["cls"] > 0
    sum(losses.values()).backward()
    for branch in model.head.cls_branches:  # descent lowers every class logit
        assert (branch[-1].bias.grad > 0).all()


def _hand_made_case(topk: int):
    """One 40 x 40 box on a 64 x 64 image; every anchor predicts a square of 2 strides around itself."""
    points, strides = yolo.anchor_grid([(8, 8), (4, 4), (2, 2)], (8, 16, 32), "cpu")
    pred_boxes = torch.cat([points - strides, points + strides], 1)[None]  # (1, A, 4)
    pred_scores = torch.full((1, len(points), 3), 0.5)
    gt_boxes = torch.tensor([[[4.0, 4.0, 44.0, 44.0], [0.0, 0.0, 0.0, 0.0]]])  # second row is padding
    result = assign_targets(pred_scores, pred_boxes, points, gt_boxes, torch.tensor([[1, 0]]),
                            torch.tensor([[True, False]]), topk=topk)
    return result, points, strides


def test_assignment_takes_the_topk_anchors_inside_the_box_at_the_matching_stride():
    result, points, strides = _hand_made_case(topk=1)
    # The 32 x 32 prediction of the stride-16 anchor at (24, 24) overlaps the box best: IoU 0.64.
    (chosen,) = result.foreground[0].nonzero()[:, 0].tolist()
    assert points[chosen].tolist() == [24.0, 24.0] and strides[chosen].item() == 16
    assert result.labels[0, chosen] == 1 and result.boxes[0, chosen].tolist() == [4.0, 4.0, 44.0, 44.0]
    expected = torch.zeros(len(points), 3)
    expected[chosen, 1] = 0.64  # the best positive's soft target is its IoU
    torch.testing.assert_close(result.scores[0], expected)

    result, points, _ = _hand_made_case(topk=10)
    foreground = result.foreground[0]
    assert foreground.sum() == 10
    x, y = points[foreground].T
    assert ((x > 4) & (x < 44) & (y > 4) & (y < 44)).all()  # centres strictly inside the box
    assert result.scores[0].amax() == pytest.approx(0.64) and (result.scores[0, ~foreground] == 0).all()


def test_an_anchor_claimed_by_two_boxes_keeps_the_one_it_overlaps_most():
    points, strides = yolo.anchor_grid([(4, 4)], (16,), "cpu")
    pred_boxes = torch.cat([points - strides, points + strides], 1)[None]
    gt_boxes = torch.tensor([[[0.0, 0.0, 48.0, 48.0], [16.0, 16.0, 34.0, 34.0]]])  # both contain (24, 24)
    result = assign_targets(torch.full((1, 16, 2), 0.5), pred_boxes, points, gt_boxes,
                            torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool), topk=16)
    centre = points.tolist().index([24.0, 24.0])
    assert result.foreground[0, centre] and result.labels[0, centre] == 0  # IoU 0.44 beats 0.32
    assert result.foreground[0].sum() == 9  # the big box's 3 x 3 inside anchors; the small one lost its only one


def test_eval_returns_clipped_detections_and_honours_conf_and_max_det():
    model = yolo.yolo_n(num_classes=4, max_det=50).eval()
    with torch.inference_mode():
        outputs = model(torch.rand(3, 3, 64, 96))
    assert len(outputs) == 3
    for out in outputs:
        assert out["boxes"].shape == (len(out["scores"]), 4) and 0 < len(out["scores"]) <= 50
        assert out["labels"].dtype == torch.int64 and (out["labels"] < 4).all()
        assert (out["scores"] > model.conf).all()
        boxes = out["boxes"]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 64).all()
    model.conf = 0.5  # untrained scores sit at the 1% prior
    with torch.inference_mode():
        assert all(len(out["scores"]) == 0 for out in model(torch.rand(2, 3, 64, 64)))


def test_learns_to_detect_the_scenes_it_trains_on():
    torch.manual_seed(0)
    scenes = make_scene_set(8, 128, seed=3, min_objects=1, max_objects=3, min_scale=0.2)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    targets = [{"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels)} for s in scenes]
    model = yolo.yolo_n(num_classes=len(SHAPE_CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.004, weight_decay=0.0)
    history = []
    for _ in range(STEPS):
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert np.mean(history[-5:]) < 0.4 * np.mean(history[:5])

    model.eval()
    with torch.inference_mode():
        outputs = model(images)
    found = total = right = confident_total = 0
    for out, target in zip(outputs, targets):
        confident = out["scores"] > 0.3
        iou = box_iou(target["boxes"], out["boxes"][confident])  # (N, K)
        hit = (iou > 0.5) & (target["labels"][:, None] == out["labels"][confident][None])
        found += hit.any(1).sum().item()  # recall: objects with a right box
        total += len(target["labels"])
        right += hit.any(0).sum().item()  # precision: boxes on a right object (a box on everything fails)
        confident_total += int(confident.sum())
    assert found >= 0.75 * total, f"{found} of {total} objects found"
    assert right >= 0.75 * confident_total, f"{right} of {confident_total} confident boxes are right"


STEPS = 60


def test_a_collapsed_prediction_gives_finite_assignment_and_gradients():
    # a flat predicted box (zero height) and a zero-area one, against a real box and a padding row: the
    # assignment's IoU would be 0/0 and torchvision's CIoU loss NaN in the gradient without foveal.ops' guards
    points, strides = yolo.anchor_grid([(8, 8)], (8,), "cpu")
    pred_boxes = torch.cat([points - strides, points + strides], 1)[None].clone()  # (1, 64, 4)
    pred_boxes[0, :, 3] = pred_boxes[0, :, 1]  # every prediction flat
    pred_boxes[0, 0] = 0  # and one of no area at all, like the padding row below
    gt_boxes = torch.tensor([[[4.0, 4.0, 44.0, 44.0], [0.0, 0.0, 0.0, 0.0]]])
    result = assign_targets(torch.full((1, 64, 2), 0.5), pred_boxes, points, gt_boxes, torch.tensor([[1, 0]]),
                            torch.tensor([[True, False]]))
    assert torch.isfinite(result.scores).all() and result.foreground.any()

    box_logits = torch.zeros(1, 64, 4, 16, requires_grad=True)
    flat_pred = pred_boxes.clone().requires_grad_(True)
    losses = YOLOLoss()(torch.zeros(1, 64, 2, requires_grad=True), box_logits, flat_pred, points, strides,
                        [{"boxes": gt_boxes[0, :1], "labels": torch.tensor([1])}])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert torch.isfinite(flat_pred.grad).all() and torch.isfinite(box_logits.grad).all()


def test_fused_model_gives_the_same_outputs_and_the_grid_is_built_once():
    torch.manual_seed(0)
    model = yolo.yolo_n(num_classes=3)
    for module in model.modules():  # statistics unlike a fresh BatchNorm's, so that folding them matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    with pytest.raises(ValueError, match="eval"):
        yolo.yolo_n(num_classes=3).fuse()
    model.eval()
    images = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        expected = model.forward_raw(images)
        fused = model.fuse()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        for a, b in zip(expected, fused.forward_raw(images)):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        yolo.cached_anchor_grid.cache_clear()
        fused(images)
        fused(images)
    assert yolo.cached_anchor_grid.cache_info().misses == 1 and yolo.cached_anchor_grid.cache_info().hits == 1
    # outside inference mode a grid of its own: autograd refuses tensors made in inference mode
    trained = yolo.yolo_n(num_classes=3)
    sum(trained(images, box_targets(([[4, 4, 30, 30]], [0]), ([], []))).values()).backward()
    assert yolo.cached_anchor_grid.cache_info().misses == 2
