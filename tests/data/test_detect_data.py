"""Detection augmentation keeps boxes on their pixels; the dataset maps back to the original image."""

import numpy as np
import pytest
import torch

from foveal.data.detect_dataset import Augment, DetectionDataset, collate
from foveal.data.detect_transforms import horizontal_flip, mosaic, random_affine
from foveal.ops.letterbox import letterbox, letterbox_shape
from foveal.data.detection import ImageAnnotations

RED = np.array([255, 0, 0], np.uint8)


def red_square_image(h=60, w=100, box=(20, 10, 50, 40)):
    image = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = RED
    return image, np.array([box], np.float32), np.array([0])


def red_extent(image):
    ys, xs = np.nonzero((image[..., 0] > 200) & (image[..., 1] < 60))
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_letterbox_scale_and_padding():
    image, boxes, _ = red_square_image()
    out, scale, (pad_x, pad_y) = letterbox(image, 50)
    assert out.shape == (50, 50, 3) and scale == 0.5 and (pad_x, pad_y) == (0, 10)
    assert np.allclose(red_extent(out), boxes[0] * scale + [pad_x, pad_y, pad_x, pad_y], atol=1)


def test_rectangular_letterbox_pads_to_multiples_of_the_stride_only():
    image, boxes, _ = red_square_image()  # 60 x 100
    out, scale, (pad_x, pad_y) = letterbox(image, 96, stride=32)
    assert out.shape == (64, 96, 3) and scale == 0.96 and (pad_x, pad_y) == (0, 3)  # 58 rows, padded to 64
    assert np.allclose(red_extent(out), boxes[0] * scale + [pad_x, pad_y, pad_x, pad_y], atol=1)
    out, scale, pad = letterbox(np.zeros((100, 150, 3), np.uint8), 128, stride=32)
    assert out.shape == (96, 128, 3) and pad == (0, 5)  # 85 rows: 96, not 128
    assert letterbox_shape(100, 150, 128, 32) == (96, 128) and letterbox_shape(100, 150, 128) == (128, 128)


def test_letterboxed_masks_and_maps_go_back_in_height_width_order():
    from foveal.ops.letterbox import letterbox_mask, unletterbox_logits, unletterbox_masks

    mask = np.zeros((30, 50), np.uint8)  # taller than wide would swap the sizes if an order were wrong
    mask[5:20, 10:40] = 1
    image, scale, pad = letterbox(np.zeros((30, 50, 3), np.uint8), 100)
    placed = letterbox_mask(mask, 100, scale, pad, 255)
    assert image.shape[:2] == placed.shape == (100, 100) and scale == 2 and pad == (0, 20)
    assert (placed[:20] == 255).all() and (placed[80:] == 255).all()  # the padding
    maps = torch.from_numpy(np.where(placed == 1, 1.0, 0.0).astype(np.float32))[None]
    assert torch.equal(unletterbox_masks(maps, scale, pad, 30, 50, 0.5)[0], torch.from_numpy(mask == 1))
    assert torch.equal(unletterbox_logits(maps, scale, pad, 30, 50)[0] > 0.5, torch.from_numpy(mask == 1))


def test_shape_batches_group_images_of_one_letterboxed_shape():
    sizes = [(150, 100), (100, 150), (150, 100), (150, 100), (128, 128), (151, 100)]  # width, height
    items = [ImageAnnotations("", w, h, pixels=np.zeros((h, w, 3), np.uint8)) for w, h in sizes]
    dataset = DetectionDataset(items, 128, stride=32)
    batches = dataset.shape_batches(2)
    assert sorted(i for batch in batches for i in batch) == list(range(6)) and max(map(len, batches)) == 2
    for batch in batches:
        shapes = {tuple(dataset[i][0].shape) for i in batch}
        assert len(shapes) == 1, (batch, shapes)  # what the data recorded is what letterbox makes
    assert sorted(map(sorted, batches)) == [[0, 2], [1], [3, 5], [4]]


@pytest.mark.parametrize("seed", range(5))
def test_affine_and_flip_move_boxes_with_pixels(seed):
    rng = np.random.default_rng(seed)
    image, boxes, labels = red_square_image()
    out, moved, kept, _ = random_affine(image, boxes, labels, None, 64, rng, scale=0.3, translate=0.1)
    if len(moved):
        assert np.allclose(red_extent(out), moved[0], atol=1.5)
        flipped, flipped_boxes = horizontal_flip(out, moved)
        assert np.allclose(red_extent(flipped), flipped_boxes[0], atol=1.5)


@pytest.mark.parametrize("seed", range(4))
def test_mosaic_boxes_stay_on_their_objects(seed):
    rng = np.random.default_rng(seed)
    samples = [(*red_square_image(box=(10 + 5 * k, 10, 30 + 5 * k, 35)), None) for k in range(4)]
    out, boxes, labels, _ = mosaic(samples, 64, rng, scale=0.3, translate=0.1, degrees=0)
    assert out.shape == (64, 64, 3) and len(boxes) == len(labels) >= 1
    for box in boxes:
        x1, y1, x2, y2 = box.round().astype(int)
        patch = out[y1:y2, x1:x2]
        assert (patch[..., 0] > 200).mean() > 0.8  # the box covers red pixels


def test_mosaic_keeps_the_objects_scale():
    # the objects a mosaic epoch trains on are as large as those of a plain epoch (and of evaluation),
    # not half as large: the mean side of whole (unclipped) objects, each image one 24 px square at
    # one of four places, with and without mosaic within 10% (it was 0.5x)
    items = [ImageAnnotations("", 128, 128, *red_square_image(128, 128, (x, y, x + 24, y + 24))[1:], np.zeros(1, bool),
                              red_square_image(128, 128, (x, y, x + 24, y + 24))[0])
             for x in (20, 80) for y in (20, 80)]
    sides = {}
    for chance in (0.0, 1.0):
        dataset = DetectionDataset(items, 128, Augment(mosaic=chance, scale=0.25, translate=0.1, hflip=0))
        torch.manual_seed(0)
        boxes = torch.cat([dataset[i % len(items)][1]["boxes"] for i in range(400)])
        whole = (boxes[:, :2] > 0.5).all(1) & (boxes[:, 2:] < 127.5).all(1)
        sides[chance] = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[whole].sqrt().mean().item()
    assert abs(sides[0.0] / 24 - 1) < 0.10 and abs(sides[1.0] / sides[0.0] - 1) < 0.10, sides


def test_dataset_targets_and_collate():
    items = [ImageAnnotations("", 100, 60, *red_square_image()[1:], np.zeros(1, bool), red_square_image()[0])
             for _ in range(3)]
    plain = DetectionDataset(items, 64)
    image, target = plain[1]
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8 and target["index"] == 1
    original = (target["boxes"] - target["pad"].repeat(2)) / target["scale"]
    assert torch.allclose(original, torch.tensor([[20.0, 10, 50, 40]]), atol=1e-4)
    torch.manual_seed(0)
    augmented = DetectionDataset(items, 64, Augment(mosaic=1.0))
    images, targets = collate([augmented[i] for i in range(3)])
    assert images.shape == (3, 3, 64, 64) and len(targets) == 3
    for target in targets:
        boxes = target["boxes"]
        assert (boxes >= 0).all() and (boxes <= 64).all() and len(boxes) == len(target["labels"])


def test_crowd_boxes_are_not_trained_on():
    image, boxes, labels = red_square_image()
    item = ImageAnnotations("", 100, 60, np.concatenate([boxes, boxes + 5]), np.array([0, 0]),
                            np.array([False, True]), image)
    _, target = DetectionDataset([item], 64)[0]
    assert len(target["boxes"]) == 1


def test_an_image_broken_after_reading_stops_with_its_name_never_another_image(tmp_path):
    from PIL import Image

    from foveal.errors import FovealError

    items = []
    for name in ("a.png", "b.png"):
        Image.fromarray(red_square_image()[0]).save(tmp_path / name)
        items.append(ImageAnnotations(str(tmp_path / name), 100, 60, *red_square_image()[1:], np.zeros(1, bool)))
    dataset = DetectionDataset(items, 64)
    assert dataset[0][0].shape == (3, 64, 64)
    (tmp_path / "a.png").write_bytes(b"garbage")
    with pytest.raises(FovealError, match=f"{tmp_path / 'a.png'}: not a readable image"):
        dataset[0]
    assert dataset[1][1]["index"] == 1


def test_the_epoch_reaches_the_dataset_with_each_item_and_seeds_it():
    from foveal.engine.loaders import EpochItems

    items = [ImageAnnotations("", 64, 64, pixels=np.full((64, 64, 3), 40 * k, np.uint8)) for k in range(4)]
    dataset = DetectionDataset(items, 64, Augment(mosaic=1.0), mosaic_epochs=2)
    epochs = EpochItems(dataset, seed=0)
    first = epochs[(1, 3)][0]
    assert dataset.mosaic_enabled
    torch.rand(5)  # the caller's RNG moves on, the item does not
    assert torch.equal(epochs[(1, 3)][0], first) and not torch.equal(epochs[(0, 3)][0], first)
    epochs[(2, 3)]
    assert not dataset.mosaic_enabled  # close_mosaic: from epoch 2 on
    state = torch.get_rng_state()
    epochs[(2, 1)]
    assert torch.equal(torch.get_rng_state(), state)  # in the main process dropout keeps its stream


def test_seeded_samples_equal_the_checksums_of_e286469():
    # checksums of these seeded samples computed at commit e286469 (before detect_transforms carried keypoints):
    # detection's and instance segmentation's training data must not change with them. Images are smaller than
    # imgsz so that only OpenCV's bit-exact bilinear resampling is involved; boxes are rounded to 1e-3
    import hashlib

    from foveal.data.segment_dataset import InstanceDataset, SegmentAugment

    rng = np.random.default_rng(7)
    items = []
    for _ in range(6):
        h, w, n = int(rng.integers(30, 60)), int(rng.integers(30, 60)), int(rng.integers(1, 5))
        xy = rng.uniform(0, [w - 12, h - 12], (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(6, 12, (n, 2))].astype(np.float32)
        masks = np.zeros((n, h, w), bool)
        for j, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
            masks[j, y1:y2, x1:x2] = True
        items.append(ImageAnnotations("", w, h, boxes, rng.integers(0, 3, n), np.arange(n) == 1,
                                      rng.integers(0, 256, (h, w, 3), dtype=np.uint8), masks=masks))

    def digest(samples):
        sha = hashlib.sha256()
        for image, target in samples:
            sha.update(image.numpy().tobytes())
            for key in ("boxes", "labels", "pad", "masks"):
                if key in target:
                    sha.update(np.round(target[key].numpy().astype(np.float64), 3).tobytes())
            sha.update(repr(target["scale"]).encode())
        return sha.hexdigest()[:16]

    torch.manual_seed(0)
    augment = Augment(mosaic=0.5, scale=0.5, translate=0.2, degrees=10)
    assert digest(DetectionDataset(items, 64, augment)[i % 6] for i in range(24)) == "251d52d4958b17d0"
    assert digest(DetectionDataset(items, 64, None, stride=32)[i] for i in range(6)) == "dd47b361cd712777"
    torch.manual_seed(0)
    instances = InstanceDataset(items, 64, SegmentAugment(mosaic=0.5, degrees=10))
    assert digest(instances[i % 6] for i in range(12)) == "e0adaaa95e3adf86"
