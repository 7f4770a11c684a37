import numpy as np
import pytest

from foveal.data.synthetic import (
    MIN_PIXELS,
    SHAPE_CLASSES,
    classification_sample,
    make_classification_set,
    make_scene_set,
    render_scene,
)


@pytest.fixture(scope="module")
def scenes():
    return make_scene_set(40, 96, seed=0)


def assert_same_scenes(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for name in ("image", "boxes", "labels", "masks"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_same_seed_same_bytes_whatever_the_global_state():
    np.random.seed(1)
    images, labels = make_classification_set(24, 32, seed=7)
    scenes = make_scene_set(5, 64, seed=7)
    np.random.seed(2)
    np.random.random(100)
    again_images, again_labels = make_classification_set(24, 32, seed=7)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(labels, again_labels)
    assert_same_scenes(scenes, make_scene_set(5, 64, seed=7))


def test_different_seeds_differ():
    assert not np.array_equal(make_classification_set(12, 32, 0)[0], make_classification_set(12, 32, 1)[0])
    first, second = make_scene_set(3, 64, seed=0), make_scene_set(3, 64, seed=1)
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(first, second))


def test_classification_shapes_and_dtypes():
    images, labels = make_classification_set(12, 40, seed=0)
    assert images.shape == (12, 40, 40, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int64
    image, label = classification_sample(np.random.default_rng(0), 33, label=4)
    assert image.shape == (33, 33, 3) and image.dtype == np.uint8 and label == 4


def test_classification_classes_are_balanced():
    _, labels = make_classification_set(60, 16, seed=3)
    assert np.bincount(labels, minlength=len(SHAPE_CLASSES)).tolist() == [10] * len(SHAPE_CLASSES)


def test_scene_shapes_and_dtypes(scenes):
    for scene in scenes:
        count = len(scene.labels)
        assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
        assert scene.boxes.shape == (count, 4) and scene.boxes.dtype == np.float32
        assert scene.labels.dtype == np.int64 and np.all((0 <= scene.labels) & (scene.labels < len(SHAPE_CLASSES)))
        assert scene.masks.shape == (count, 96, 96) and scene.masks.dtype == bool


def test_rectangular_size_is_height_width():
    scene = render_scene(np.random.default_rng(0), (48, 80), min_objects=2)
    assert scene.image.shape == (48, 80, 3) and scene.masks.shape[1:] == (48, 80)
    assert np.all(scene.boxes[:, 2] <= 80) and np.all(scene.boxes[:, 3] <= 48)


def test_boxes_are_tight_around_masks_with_exclusive_end(scenes):
    for scene in scenes:
        for box, mask in zip(scene.boxes, scene.masks):
            rows, columns = np.nonzero(mask)
            expected = [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]
            np.testing.assert_array_equal(box, expected)
            assert 0 <= box[0] < box[2] <= 96 and 0 <= box[1] < box[3] <= 96


def test_masks_do_not_overlap_and_are_big_enough(scenes):
    for scene in scenes:
        assert np.all(scene.masks.sum(axis=0) <= 1)
        assert np.all(scene.masks.sum(axis=(1, 2)) >= MIN_PIXELS)


def test_mask_is_exactly_the_painted_pixels(scenes):
    # Every object is painted in one colour without anti-aliasing, so its visible pixels share it.
    for scene in scenes:
        for mask in scene.masks:
            assert len(np.unique(scene.image[mask], axis=0)) == 1


def test_semantic_mask_agrees_with_instances(scenes):
    for scene in scenes:
        semantic = scene.semantic_mask()
        assert semantic.shape == (96, 96) and semantic.dtype == np.uint8
        expected = np.zeros((96, 96), np.uint8)
        for mask, label in zip(scene.masks, scene.labels):
            expected[mask] = label + 1
        np.testing.assert_array_equal(semantic, expected)
        assert np.array_equal(semantic > 0, scene.masks.any(axis=0))


def test_object_counts(scenes):
    counts = [len(scene.labels) for scene in scenes]
    assert min(counts) == 0 and max(counts) >= 4
    pairs = make_scene_set(20, 96, seed=0, min_objects=2, max_objects=2)
    assert all(len(scene.labels) == 2 for scene in pairs)


def silhouette_profile(image: np.ndarray, bins: int = 12) -> np.ndarray:
    """(bins,) histogram of the object's pixel distances from its centroid, scaled to [0, 1].

    The object is the most frequent exact colour; the profile ignores position, size, rotation.
    """
    packed = image.reshape(-1, 3).astype(np.int64) @ np.array([65536, 256, 1])
    colours, counts = np.unique(packed, return_counts=True)
    rows, columns = np.nonzero((packed == colours[counts.argmax()]).reshape(image.shape[:2]))
    distance = np.hypot(rows - rows.mean(), columns - columns.mean())
    return np.histogram(distance / distance.max(), bins, (0, 1))[0] / len(rows)


def test_shape_classes_are_learnable():
    images, labels = make_classification_set(600, 32, seed=0)
    features = np.stack([silhouette_profile(image) for image in images])
    train, held_out = slice(0, 450), slice(450, None)
    centroids = np.stack([features[train][labels[train] == c].mean(0) for c in range(len(SHAPE_CLASSES))])
    predicted = np.argmin(((features[held_out, None] - centroids) ** 2).sum(-1), axis=1)
    assert (predicted == labels[held_out]).mean() > 0.5  # chance is 1/6
