import math

import numpy as np
import pytest
import torch

from foveal.errors import FovealError
from foveal.ops.boxes import (aligned_iou, box_area, box_iou, box_iou_numpy, box_masks, box_spans, clip_boxes,
                              complete_box_iou, convert_boxes, denormalize_boxes, distance_box_iou,
                              generalized_box_iou, nms, normalize_boxes)

UNIT = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
HALF_RIGHT = torch.tensor([[0.5, 0.0, 1.5, 1.0]])  # overlaps UNIT by half: IoU = 0.5 / 1.5
FAR = torch.tensor([[2.0, 0.0, 3.0, 1.0]])  # disjoint from UNIT, enclosing box 3 x 1


def test_conversions_by_hand_and_round_trip():
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 80.0]])
    assert convert_boxes(xyxy, "xyxy", "xywh").tolist() == [[10, 20, 40, 60]]
    assert convert_boxes(xyxy, "xyxy", "cxcywh").tolist() == [[30, 50, 40, 60]]
    assert convert_boxes(torch.tensor([[30.0, 50, 40, 60]]), "cxcywh", "xywh").tolist() == [[10, 20, 40, 60]]
    boxes = torch.rand(20, 2) * 100
    boxes = torch.cat([boxes, boxes + torch.rand(20, 2) * 50 + 1], 1)
    for src in ("xyxy", "xywh", "cxcywh"):
        for dst in ("xyxy", "xywh", "cxcywh"):
            there = convert_boxes(convert_boxes(boxes, "xyxy", src), src, dst)
            assert torch.allclose(convert_boxes(there, dst, "xyxy"), boxes, atol=1e-4)
    assert convert_boxes(torch.zeros(0, 4), "xywh", "cxcywh").shape == (0, 4)
    with pytest.raises(FovealError, match="did you mean 'xywh'"):
        convert_boxes(boxes, "xyhw", "xyxy")


def test_normalize_clip_area():
    boxes = torch.tensor([[32.0, 24.0, 64.0, 48.0]])
    normal = normalize_boxes(boxes, 480, 640)
    assert torch.allclose(normal, torch.tensor([[0.05, 0.05, 0.1, 0.1]]))
    assert torch.allclose(denormalize_boxes(normal, 480, 640), boxes)
    # normalising commutes with format conversion (every format is x, y, x, y-like)
    assert torch.allclose(convert_boxes(normal, "xyxy", "cxcywh"),
                          normalize_boxes(convert_boxes(boxes, "xyxy", "cxcywh"), 480, 640))
    clipped = clip_boxes(torch.tensor([[-5.0, 10.0, 700.0, 500.0], [1.0, -2.0, 3.0, 4.0]]), 480, 640)
    assert clipped.tolist() == [[0, 10, 640, 480], [1, 0, 3, 4]]
    assert box_area(torch.tensor([[0.0, 0.0, 32.0, 32.0], [1.0, 1.0, 1.0, 5.0]])).tolist() == [1024, 0]


def test_pairwise_iou_family_by_hand():
    assert box_iou(UNIT, HALF_RIGHT).item() == pytest.approx(1 / 3)
    assert box_iou(UNIT, FAR).item() == 0
    assert generalized_box_iou(UNIT, FAR).item() == pytest.approx(0 - (3 - 2) / 3)  # IoU - empty part of hull
    # DIoU: centres 2 apart, enclosing diagonal^2 = 3^2 + 1^2
    assert distance_box_iou(UNIT, FAR).item() == pytest.approx(-4 / 10, abs=1e-6)
    assert complete_box_iou(UNIT, UNIT).item() == pytest.approx(1.0, abs=1e-6)
    pairwise = box_iou(torch.cat([UNIT, FAR]), torch.cat([UNIT, HALF_RIGHT, FAR]))
    assert pairwise.shape == (2, 3)


def test_aligned_iou_matches_pairwise_diagonal():
    a = torch.cat([UNIT, UNIT, UNIT, torch.tensor([[0.0, 0.0, 2.0, 1.0]])])
    b = torch.cat([UNIT, HALF_RIGHT, FAR, torch.tensor([[0.5, 0.0, 1.5, 3.0]])])
    assert aligned_iou(a, b).shape == (4,)
    assert aligned_iou(a, b)[:3].tolist() == pytest.approx([1, 1 / 3, 0], abs=1e-6)
    assert aligned_iou(a, b, "giou")[2].item() == pytest.approx(-1 / 3, abs=1e-6)
    for kind, pairwise in (("iou", box_iou), ("giou", generalized_box_iou), ("diou", distance_box_iou),
                           ("ciou", complete_box_iou)):
        assert torch.allclose(aligned_iou(a, b, kind), pairwise(a, b).diagonal(), atol=1e-5), kind
    assert aligned_iou(UNIT, UNIT, "ciou").item() == pytest.approx(1.0, abs=1e-6)
    # CIoU by hand for concentric boxes of different shape: IoU - alpha * v, no distance term
    wide, tall = torch.tensor([[0.0, 1.0, 4.0, 3.0]]), torch.tensor([[1.0, 0.0, 3.0, 4.0]])
    iou = 4 / 12
    v = 4 / math.pi**2 * (math.atan(2 / 4) - math.atan(4 / 2)) ** 2
    assert aligned_iou(wide, tall, "ciou").item() == pytest.approx(iou - v / (1 - iou + v) * v, abs=1e-5)
    with pytest.raises(FovealError, match="IoU kind"):
        aligned_iou(a, b, "eiou")


def test_aligned_ciou_gradients_finite_for_flat_boxes():
    flat = torch.tensor([[1.0, 1.0, 3.0, 1.0]], requires_grad=True)  # zero height
    loss = (1 - aligned_iou(flat, torch.tensor([[0.0, 0.0, 2.0, 2.0]]), "ciou")).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(flat.grad).all()


def test_nms_same_class_different_class_agnostic_and_max_det():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.6, 0.9, 0.3])
    same = torch.tensor([0, 0, 0])
    assert nms(boxes, scores, same, 0.5, 100).tolist() == [1, 2]  # higher-scoring of the overlapping pair
    differ = torch.tensor([0, 1, 0])
    assert nms(boxes, scores, differ, 0.5, 100).tolist() == [1, 0, 2]  # sorted by score
    assert nms(boxes, scores, differ, 0.5, 100, class_agnostic=True).tolist() == [1, 2]
    assert nms(boxes, scores, None, 0.5, 100).tolist() == [1, 2]
    assert nms(boxes, scores, differ, 0.5, 2).tolist() == [1, 0]
    assert nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5, 10).shape == (0,)


def test_pairwise_iou_is_torchvisions_but_zero_for_two_empty_boxes():
    import torchvision

    torch.manual_seed(0)
    a, b = torch.rand(5, 2) * 10, torch.rand(7, 2) * 10
    a, b = torch.cat([a, a + torch.rand(5, 2) * 5], 1), torch.cat([b, b + torch.rand(7, 2) * 5], 1)
    assert torch.equal(box_iou(a, b), torchvision.ops.box_iou(a, b))
    empty = torch.zeros(1, 4)
    assert torchvision.ops.box_iou(empty, empty).isnan().all() and box_iou(empty, empty).item() == 0


def test_unletterbox_boxes_inverts_the_letterbox_and_clips():
    from foveal.ops.boxes import unletterbox_boxes

    original = torch.tensor([[10.0, 20.0, 60.0, 90.0], [140.0, 0.0, 150.0, 100.0]])  # in a 150 x 100 image
    scale, pad = 128 / 150, (0, 5)
    boxed = original * scale + torch.tensor([pad[0], pad[1], pad[0], pad[1]], dtype=torch.float32)
    torch.testing.assert_close(unletterbox_boxes(boxed, scale, pad, 100, 150), original)
    outside = unletterbox_boxes(torch.tensor([[-4.0, 0.0, 130.0, 99.0]]), scale, pad, 100, 150)
    assert outside.tolist() == [[0.0, 0.0, 150.0, 100.0]]  # the padding is not the image


def test_box_iou_numpy_equals_box_iou():
    torch.manual_seed(0)
    a = torch.rand(7, 2).repeat(1, 2) + torch.cat([torch.zeros(7, 2), torch.rand(7, 2)], 1)
    b = torch.cat([a[:3] + 0.1, torch.tensor([[0.5, 0.5, 0.5, 0.5], [2.0, 2.0, 3.0, 3.0]])])  # no area; far away
    ours = box_iou_numpy(a.numpy(), b.numpy())
    assert ours.shape == (7, 5) and ours.dtype.name == "float64"
    torch.testing.assert_close(torch.from_numpy(ours).float(), box_iou(a, b))
    assert box_iou_numpy([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]  # no area on either side: 0, not NaN
    assert box_iou_numpy(np.zeros((0, 4)), b.numpy()).shape == (0, 5)


def test_box_iou_numpy_on_shared_and_empty_boxes():
    boxes = torch.rand(30, 2) * 100
    boxes = torch.cat([boxes, boxes + torch.rand(30, 2) * 40], 1)
    a, b = boxes[:20], torch.cat([boxes[10:], torch.zeros(2, 4)])  # shared boxes (IoU 1) and empty ones
    expected = box_iou(a, b)
    assert torch.allclose(torch.from_numpy(box_iou_numpy(a.double().numpy(), b.double().numpy())).float(), expected,
                          atol=1e-6)


def test_box_masks_fill_the_box_a_mask_gives_and_no_pixel_more():
    from torchvision.ops import masks_to_boxes

    masks = torch.zeros(2, 6, 7, dtype=torch.bool)
    masks[0, 1:4, 2:6] = True
    masks[1, 5, 0] = True
    boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # foveal's boxes: x2 = last column + 1
    assert torch.equal(box_masks(boxes, 6, 7), masks)
    half = box_masks(torch.tensor([[0.4, 0.6, 2.6, 1.6]]), 3, 4)[0]  # pixel centres at 0.5, 1.5, ...
    assert half.tolist() == [[False] * 4, [True, True, True, False], [False] * 4]


def test_box_spans_are_the_rows_and_columns_box_masks_fills():
    torch.manual_seed(0)
    boxes = torch.rand(200, 4) * 40 - 5  # some outside the 30 x 20 image, some empty, some inverted
    boxes[:100, 2:] = boxes[:100, :2] + torch.rand(100, 2) * 20
    boxes[:4] = torch.tensor([[0.5, 0.5, 1.5, 1.5], [2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 20.0, 30.0], [19.4, 29.6, 25, 40]])
    for box, (top, bottom, left, right), mask in zip(boxes, box_spans(boxes, 30, 20).tolist(), box_masks(boxes, 30, 20)):
        expected = torch.zeros_like(mask)
        expected[top:max(top, bottom), left:max(left, right)] = True
        assert torch.equal(mask, expected), box
