"""Each torchvision detector family trains one epoch and evaluates through foveal's engine.

Tiny on purpose: 4 training and 2 validation scenes of 64 px, batch 2, so two optimizer steps per
family. The learning rate is lowered from the detect default (tuned for yolo) because some of
these detectors, trained from scratch, diverge within two steps at 4e-3 (RetinaNet, SSD300).
"""

import csv
import math

import pytest

import foveal
from foveal.data.detection import DetectionData
from foveal.data.formats.yolo import write_yolo
from foveal.data.synthetic import SHAPE_CLASSES

from tests.tasks.detect.test_detect import scenes_as_items

FAMILIES = [
    "fasterrcnn_resnet18_fpn",  # two-stage, ResNet + FPN built here
    "fasterrcnn_mobilenet_v3_large_320_fpn",  # two-stage, torchvision's MobileNetV3 builder
    "retinanet_resnet50_fpn",  # one-stage, focal loss
    "fcos_resnet50_fpn",  # anchor-free
    "ssdlite320_mobilenet_v3_large",  # SSD head, fixed 320 px input
    "ssd300_vgg16",  # SSD, fixed 300 px input: the slowest here
]


@pytest.fixture(scope="module")
def tiny_yolo(tmp_path_factory):
    data = DetectionData(list(SHAPE_CLASSES), {"train": scenes_as_items(4, 64, 1), "val": scenes_as_items(2, 64, 2)})
    return write_yolo(data, tmp_path_factory.mktemp("tiny") / "yolo")


# each family in one precision, alternating, so that both paths are tested whatever this CPU would choose
@pytest.mark.parametrize("model,amp", [(model, ("off", "bf16")[k % 2]) for k, model in enumerate(FAMILIES)])
def test_family_trains_and_val_reproduces(model, amp, tiny_yolo, tmp_path):
    # exact equality below also checks that val evaluates in the memory layout training used: a
    # contiguous reload reorders the near-tied scores of an untrained detector (mAP moves ~1%)
    run = foveal.train("detect", data=tiny_yolo, model=model, imgsz=64, batch=2, epochs=1, lr=1e-4, mosaic=0,
                       amp=amp, workers=0, verbose=False, project=tmp_path, name="run")
    with (run.run_dir / "metrics.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    loss = float(row["train_loss"])
    assert math.isfinite(loss) and 0 < loss < 100, loss  # 2 to 50 here; a diverged second step, hundreds and up
    assert "map" in row

    again = foveal.val("detect", weights=run.best, project=tmp_path, verbose=False, batch=2)
    assert sum(len(d["scores"]) for d in again.details["detections"]) > 0  # the reloaded model detects
    for key, value in again.metrics.items():  # the saved weights score what the trained model scored
        assert value == pytest.approx(float(row[key]), abs=1e-9), key
