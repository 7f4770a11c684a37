"""Shared fixtures: tiny image folders made on the spot, and a quick training config."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock
from PIL import Image

from foveal.data.detection import DetectionData, ImageAnnotations
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.report import drawing

torch.set_flush_denormal(True)  # as foveal does whenever it trains or evaluates

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def write_colour_images(folder: Path, count: int, size: int = 24, seed: int = 0, classes=COLOURS):
    """folder/<colour>/<i>.png: noisy images whose mean colour is the class (easy to learn)."""
    rng = np.random.default_rng(seed)
    for name, rgb in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


@pytest.fixture
def colour_folder(tmp_path) -> Path:
    """tmp/colours/{train,val}/{red,green,blue}/*.png"""
    root = tmp_path / "colours"
    write_colour_images(root / "train", 12, seed=0)
    write_colour_images(root / "val", 4, seed=1)
    return root


def run_cli(*args, cwd=None, timeout=600):
    """Run `python -m foveal ARGS` and return the CompletedProcess (text output). Training runs in full
    precision unless the test says amp=: the machine must not choose what a test checks. Reports skip
    their plots unless the test says plots= (see reports_without_plots)."""
    args = [str(a) for a in args]
    if args[1:2] == ["train"] and not any(a.startswith("amp=") for a in args):
        args.append("amp=off")
    if args[1:2] in (["train"], ["val"]) and not any(a.startswith("plots=") for a in args):
        args.append("plots=false")
    return subprocess.run([sys.executable, "-m", "foveal", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def pytest_configure(config):
    """Under `pytest -n N` (make test), each worker's own tensors use its share of the cores: N workers
    that each took every core would wait on each other's threads. (Pinning each worker to its cores with
    sched_setaffinity was slower: onnxruntime and loader workers then crowd one core.)"""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
    if count > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // count))


LONG_FIRST = ("tasks", "engine", "serve")  # the folders of end-to-end runs: the suite's longest files


def pytest_collection_modifyitems(config, items):
    """The long files first (each file's own order kept): `pytest -n N` hands whole files to the workers in
    this order, so the long ones start at once and the short ones fill the gaps, instead of one worker
    finishing a long file alone at the end."""
    tests = Path(__file__).parent
    items.sort(key=lambda item: item.path.relative_to(tests).parts[0] not in LONG_FIRST)


@pytest.fixture(autouse=True)
def cpu_without_bf16(monkeypatch):
    """amp=auto as on a CPU without native bf16, whatever this one has; tests that want bf16 say amp=bf16."""
    monkeypatch.setattr("foveal.engine.device.cpu_has_native_bf16", lambda: False)


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """The thread count of in-process runs as on a quiet machine, whatever else runs beside the tests (the
    count can change a sum's last digits); tests/engine/test_device.py tests the busy machine's choice."""
    monkeypatch.setattr("foveal.engine.cores.busy_cores_between", lambda first, last: 0.0)


@pytest.fixture(autouse=True)
def threads_as_found():
    """A test's in-process run sets torch's thread count for the whole process (threads=1, say): each test
    starts with the count the one before it found, so none runs the rest of the suite on one core."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def reports_without_plots(request, monkeypatch):
    """Drawing a report's plots is most of a tiny run's time (2 of 3 seconds): runs in tests write their
    reports' tables only, unless the test is marked `plots`; tests/report/test_report.py tests the drawing."""
    if request.node.get_closest_marker("plots"):
        return
    for module in ("foveal.engine.trainer", "foveal.engine.modes"):
        monkeypatch.setattr(f"{module}.drawing", lambda on: drawing(False))


WIDE_CATEGORY_IDS = [3, 5, 9, 11, 17, 20]  # COCO-style ids that are neither 0..C-1 nor 1..C


@pytest.fixture(scope="session")
def wide_coco(tmp_path_factory):
    """16 scenes of 100 x 150 px (letterboxed at 128: resized 0.853x and padded 5 px above and below) as
    a COCO file whose image ids (1000 + 7k) and category ids (WIDE_CATEGORY_IDS) are the source's own."""
    from foveal.data.formats.coco import write_coco

    root = tmp_path_factory.mktemp("wide")
    scenes = make_scene_set(16, (100, 150), seed=5, min_objects=1, max_objects=2, min_scale=0.3)
    items = [ImageAnnotations("", 150, 100, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image) for s in scenes]
    write_coco(DetectionData(list(SHAPE_CLASSES), {"train": items}), root)
    document = json.loads((root / "train.json").read_text())
    for image in document["images"]:
        image["id"] = 1000 + 7 * image["id"]
    for annotation in document["annotations"]:
        annotation["image_id"] = 1000 + 7 * annotation["image_id"]
        annotation["category_id"] = WIDE_CATEGORY_IDS[annotation["category_id"] - 1]
    for category in document["categories"]:
        category["id"] = WIDE_CATEGORY_IDS[category["id"] - 1]
    (root / "train.json").write_text(json.dumps(document))
    return root / "train.json", root / "train"


@pytest.fixture(scope="session")
def trained_detector(wide_coco, tmp_path_factory):
    """(best.safetensors, COCO file, image folder) of a yolo_n trained 36 epochs on the wide scenes (about
    40 s), exported beside itself as best.onnx (any batch and size); shared by the detect, inspect and serve
    tests. Under `pytest -n N` the first worker that asks trains it and the others wait for it and take its
    files (a lock in the folder the workers' temporary folders share): it is trained once per run."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return train_detector(*wide_coco, tmp_path_factory.mktemp("detector"))
    shared = tmp_path_factory.getbasetemp().parent  # this run's, one per session: no stale files
    record = shared / "trained_detector.json"
    with FileLock(shared / "trained_detector.lock"):
        if not record.exists():
            paths = train_detector(*wide_coco, tmp_path_factory.mktemp("detector"))
            record.write_text(json.dumps([str(path) for path in paths]))
    return tuple(Path(path) for path in json.loads(record.read_text()))


def train_detector(annotations: Path, images: Path, project: Path) -> tuple[Path, Path, Path]:
    data = f"coco:{annotations},{images};{annotations},{images}"  # trained and scored on the same images
    result = run_cli("detect", "train", f"data={data}", "model=yolo_n", "imgsz=128", "epochs=36", "batch=8",
                     "lr=0.004", "weight_decay=0", "warmup_epochs=2", "mosaic=0", "scale=0", "translate=0", "hflip=0",
                     "hsv_h=0", "hsv_s=0", "hsv_v=0", f"project={project}", "name=learn", "threads=2", "workers=0")
    assert result.returncode == 0, result.stderr[-3000:]
    best = project / "detect" / "learn" / "best.safetensors"
    result = run_cli("detect", "export", f"weights={best}", "dynamic=true")
    assert result.returncode == 0, result.stderr[-2000:]
    return best, annotations, images


@pytest.fixture
def no_network(monkeypatch):
    """Building a model must not download anything: any name lookup or connection fails the test,
    even when a library catches the error (the Hugging Face hub retries, then falls back to its cache)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("tests may not reach the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
    assert not attempts, f"a model tried to reach the network: {attempts[0]}"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (its module fixtures too): tiny convolutions gain nothing from a
    second thread, and on cores other processes keep busy two OpenMP threads waiting on each other make a step
    up to 100x slower (a learning run took 15 s with two threads, 2 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def box_targets(*boxes_and_labels) -> list[dict]:
    """Detection targets of ([xyxy boxes], [labels]) pairs, one per image."""
    return [{"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
             "labels": torch.tensor(labels, dtype=torch.int64)} for boxes, labels in boxes_and_labels]


def overfit(model, images, targets, steps: int, lr: float = 0.004):
    """`model` after `steps` AdamW steps on one batch (images in [0, 1], the model's targets), on one thread:
    tiny convolutions gain nothing from a second, busy core. The tests' small trained models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    try:
        for _ in range(steps):
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model


@pytest.fixture(scope="session")
def trained_yolo_seg(tmp_path_factory):
    """(weights file, COCO data= string, image folder, the scenes as an (8, 3, 96, 96) batch) of a yolo_n-seg
    trained 60 steps on 8 shapes scenes of 96 px (a few seconds), written with the scenes as COCO data; shared
    by the segment export and serve tests (none writes beside the weights but its own graphs)."""
    import foveal
    from foveal.data.formats.coco import write_coco
    from foveal.engine.checkpoint import save_weights

    size = 96
    torch.manual_seed(0)
    scenes = make_scene_set(8, size, seed=3, min_objects=1, max_objects=3, min_scale=0.3)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    targets = [{"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels),
                "masks": torch.from_numpy(s.masks)} for s in scenes]
    kwargs = {"num_classes": len(SHAPE_CLASSES), "imgsz": size}
    model = foveal.create_model("yolo_n-seg", "segment", **kwargs)
    overfit(model, images, targets, 60)
    root = tmp_path_factory.mktemp("yolo_seg")
    weights = root / "best.safetensors"
    save_weights(weights, model.state_dict(), {"task": "segment", "model": "yolo_n-seg", "model_kwargs": kwargs,
                                               "classes": list(SHAPE_CLASSES), "imgsz": size, "kind": "instance"})
    items = [ImageAnnotations("", size, size, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image, s.masks)
             for s in scenes]
    write_coco(DetectionData(list(SHAPE_CLASSES), {"val": items}), root)
    return weights, f"coco:{root / 'val.json'},{root / 'val'}", root / "val", images


@pytest.fixture(scope="session")
def trained_yolo_pose(tmp_path_factory):
    """(weights file, folder of the 8 images as PNG, their ImageAnnotations) of a yolo_n-pose trained 80 steps on
    8 stick-figure images of 96 px (a few seconds): boxes and most joints found with visibility scores near 1;
    shared by the pose serve tests (none writes beside the weights but its own graphs)."""
    import foveal
    from foveal.data.stickmen import STICKMEN_LAYOUT, stickmen_pose_data
    from foveal.engine.checkpoint import save_weights

    size = 96
    items = stickmen_pose_data(imgsz=size, n_train=8, n_val=1, n_test=1).splits["train"]
    torch.manual_seed(0)
    images = torch.from_numpy(np.stack([item.pixels for item in items])).permute(0, 3, 1, 2).float() / 255
    targets = [{"boxes": torch.from_numpy(item.boxes), "labels": torch.from_numpy(item.labels),
                "keypoints": torch.from_numpy(item.keypoints)} for item in items]
    kwargs = {"num_classes": 1, "num_keypoints": STICKMEN_LAYOUT.count, "imgsz": size}
    model = foveal.create_model("yolo_n-pose", "pose", **kwargs)
    overfit(model, images, targets, 80)
    root = tmp_path_factory.mktemp("yolo_pose")
    weights = root / "best.safetensors"
    save_weights(weights, model.state_dict(), {"task": "pose", "model": "yolo_n-pose", "model_kwargs": kwargs,
                                               "classes": ["person"], "imgsz": size,
                                               "keypoints": STICKMEN_LAYOUT.to_dict()})
    folder = root / "images"
    folder.mkdir()
    for k, item in enumerate(items):
        Image.fromarray(item.pixels).save(folder / f"{k}.png")
    return weights, folder, items


@pytest.fixture(scope="session")
def digits_mlp(tmp_path_factory):
    """best.safetensors of a one-epoch mlp on digits at 8x8 (a second or two), trained once for every test
    that needs real classifier weights (none writes beside them)."""
    import foveal

    project = tmp_path_factory.mktemp("digits_mlp")
    return foveal.train("classify", data="digits", model="mlp", imgsz=8, epochs=1, workers=0, threads=1, amp="off",
                        plots=False, verbose=False, project=str(project), name="digits").best


QUICK = dict(data="digits", model="simple_cnn", imgsz=16, batch=64, verbose=False, workers=0)
