"""`foveal TASK MODE key=value` end to end; one-line errors with exit code 2 for user mistakes, and one
line plus an error.log (exit code 1) for bugs."""

import argparse
import json
import re
import subprocess
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import foveal.cli
from foveal.engine import runs
from foveal.engine.checkpoint import load_weights

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def digits_weights(digits_mlp):
    """best.safetensors of a one-epoch mlp on digits at 8x8 (conftest's, trained once per run)."""
    return digits_mlp


def assert_one_line_error(result, message):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


def main_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """foveal.cli.main(args) as the process would run it (exit code, stdout, stderr), without starting
    one: the subprocess tests above show that `python -m foveal` returns main's code."""
    code = foveal.cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def run_folders(root) -> list:
    """The run folders (exp, val, predict, ...) any task made under root."""
    return sorted(p for task in ("classify", "detect", "segment") for p in root.glob(f"**/{task}/*") if p.is_dir())


def test_train_val_predict_info_through_the_cli(tmp_path, colour_folder):
    common = ["imgsz=16", "workers=0", f"project={tmp_path}"]
    train = run_cli("classify", "train", f"data={colour_folder}", "model=simple_cnn", "epochs=2", "batch=8",
                    "name=cli", *common)
    assert train.returncode == 0, train.stderr
    table = [line.split() for line in train.stdout.splitlines() if line.lstrip().startswith(("epoch ", "1/2", "2/2"))]
    assert table[0] == ["epoch", "train_loss", "val_loss", "top1", "top5", "lr", "seconds"], train.stdout
    assert [row[0] for row in table[1:]] == ["1/2", "2/2"] and all(len(row) in (7, 8) for row in table[1:])
    assert "report:" in train.stdout
    weights = tmp_path / "classify" / "cli" / "best.safetensors"

    val = run_cli("classify", "val", f"weights={weights}", *common)
    assert val.returncode == 0, val.stderr
    assert "top1=" in val.stdout and (tmp_path / "classify" / "val" / "report.html").is_file()

    predict = run_cli("classify", "predict", f"weights={weights}", f"source={colour_folder / 'val' / 'red'}",
                      "topk=2", *common)
    assert predict.returncode == 0, predict.stderr
    results = json.loads((tmp_path / "classify" / "predict" / "predictions.json").read_text())
    assert len(results) == 4 and len(results[0]["top"]) == 2
    assert sum(r["top"][0]["class"] == "red" for r in results) >= 3
    assert re.search(r"per image: [\d.]+ ms preprocess, [\d.]+ ms inference, [\d.]+ ms postprocess", predict.stdout)

    info = run_cli("classify", "info", "model=resnet18", "imgsz=224")
    assert info.returncode == 0 and "11,689,512 parameters" in info.stdout and "1.814 GMACs" in info.stdout


def test_models_and_help(capsys):
    models = main_in_process(capsys, "models", "classify")
    assert models.returncode == 0 and {"simple_cnn", "resnet50", "vit_b_16", "convnext_tiny"} <= set(models.stdout.split())
    groups, counts = {}, {}  # heading ("segment (instance)") -> the names under it, and the count it gives
    for line in main_in_process(capsys, "models").stdout.splitlines():
        if line.startswith(("  trains with", "    ")):  # the models' own training defaults
            continue
        if line.startswith("  "):
            groups[heading] += line.split()
        else:
            heading, count = line.split(": ")
            groups[heading], counts[heading] = [], int(count)
    assert list(groups) == ["classify", "detect", "detect (fixed_size)", "segment (instance)", "segment (semantic)",
                            "pose", "pose (landmark)", "restore", "forecast"]
    assert all(len(names) == counts[heading] == len(set(names)) for heading, names in groups.items())
    assert "yolo_n" in groups["detect"] and "ssd300_vgg16" in groups["detect (fixed_size)"]
    assert "maskrcnn_resnet50_fpn" in groups["segment (instance)"] and "unet" in groups["segment (semantic)"]
    assert "unet" in groups["restore"] and "simple_cnn" in groups["classify"]  # a name two tasks share: in both
    segment = main_in_process(capsys, "models", "segment").stdout
    assert segment.startswith("segment (instance): ") and "\nsegment (semantic): " in segment
    assert "classify" not in segment and "yolo_n" not in segment.split() and "yolo_n-seg" in segment.split()
    assert ("trains with lr=0.004 weight_decay=0.05 batch=16 unless told otherwise: yolo_m-seg yolo_n-seg yolo_s-seg"
            in " ".join(segment.split()))
    assert_one_line_error(main_in_process(capsys, "models", "segmnt"), "unknown task 'segmnt' (did you mean 'segment'?)")
    keys = main_in_process(capsys, "classify", "help")
    assert keys.returncode == 0 and "label_smoothing" in keys.stdout and "(valid: >= 1)" in keys.stdout
    usage = run_cli()
    assert usage.returncode == 0 and "usage: foveal TASK MODE" in usage.stdout


@pytest.mark.parametrize("args,message", [
    (["classify", "train", "data=digits", "epoch=3"], "unknown key 'epoch' (did you mean 'epochs'?)"),
    (["classify", "train", "data=digits", "model=resnet5"], "unknown model 'resnet5' (did you mean 'resnet50'?)"),
    (["classify", "train", "data=no/such/folder"], "data: no such file or folder: no/such/folder"),
    (["classify", "train", "data=digits", "epochs=many"], "epochs: expected an integer, got 'many'"),
    (["classify", "val", "weights=missing.safetensors"], "weights: no such file: missing.safetensors"),
    (["classify", "fly"], "unknown mode 'fly'"),
    (["clasify", "train"], "unknown task 'clasify' (did you mean 'classify'?)"),
    (["classify", "train", "epochs"], "expected key=value, got 'epochs'"),
    (["classify", "train", "data=digits", "device=cuda"], "no CUDA GPU is available"),
    (["classify", "train", "data=digits", "batch=0"], "batch: 0 is out of range; valid: >= 1"),
    (["classify", "train", "data=digits", "lr=-1"], "lr: -1 is out of range; valid: > 0"),
    (["classify", "train", "data=digits", "threads=-1"], "threads: -1 is out of range; valid: >= 0"),
    (["classify", "train", "data=digits", "epochs=0"], "epochs: 0 is out of range; valid: >= 1"),
    (["classify", "predict", "weights=w.safetensors", "source=x.png", "topk=0"], "topk: 0 is out of range"),
    (["classify", "train", "data=digits", "model=vit_b_16", "imgsz=100"],
     "imgsz: 100 is not a multiple of vit_b_16's patch size 16 (try 96 or 112)"),
    (["classify", "val", "weights=pickled.pth"], "pickled.pth: cannot be read as a weights-only PyTorch state dict "
     "(it holds a pickled argparse.Namespace, and foveal unpickles nothing but tensors and plain containers"),
    (["classify", "train", "data=digits", "pretrained=pickled.pth"], "it holds a pickled argparse.Namespace"),
    (["classify", "info", "weights=state.pth"], "weights: state.pth is not a foveal weights file (.safetensors or "
                                                ".onnx, with the task, model and classes)"),
    (["detect", "train", "data=damaged/data.yaml", "imgsz=100"],  # said before the data's warning
     "imgsz: must be a multiple of 32 for detection, got 100"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    torch.save({"w": torch.zeros(2), "args": argparse.Namespace(lr=0.1)}, "pickled.pth")  # as training scripts do
    torch.save({"w": torch.zeros(2)}, "state.pth")
    write_damaged_yolo_set(tmp_path / "damaged")
    result = main_in_process(capsys, *args, f"project={tmp_path / 'runs'}")
    assert_one_line_error(result, message)
    assert "\x1b[" not in result.stderr and "weights_only" not in result.stderr  # no colours, no advice to unpickle
    assert run_folders(tmp_path) == []  # the input is checked before the run folder is made


def write_damaged_yolo_set(root):
    """A YOLO data set whose indexing warns: one image of two cannot be decoded."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [a]\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "0.png")
    (root / "images" / "1.png").write_text("not a PNG")
    (root / "labels" / "0.txt").write_text("0 0.5 0.5 0.2 0.2\n")


def test_a_user_error_through_the_process_is_exit_code_2(tmp_path):
    result = run_cli("classify", "train", "data=digits", "batch=0", f"project={tmp_path}")
    assert_one_line_error(result, "batch: 0 is out of range; valid: >= 1")


def test_a_mistake_in_the_command_is_said_before_the_data_warns(tmp_path):
    write_damaged_yolo_set(tmp_path / "damaged")  # the process shows warnings, as pytest does not
    result = run_cli("detect", "train", f"data={tmp_path / 'damaged' / 'data.yaml'}", "imgsz=100",
                     f"project={tmp_path / 'runs'}")
    assert_one_line_error(result, "imgsz: must be a multiple of 32 for detection, got 100")


def test_errors_about_files_are_one_line_and_leave_no_run_folder(tmp_path, digits_weights, capsys):
    project = tmp_path / "runs"
    missing_source = main_in_process(capsys, "classify", "predict", f"weights={digits_weights}",
                                     f"source={tmp_path / 'nothing' / 'here.png'}", f"project={project}")
    assert_one_line_error(missing_source, "source: no such file")

    meta = {"task": "classify", "model": "mlp", "classes": [str(i) for i in range(10)], "imgsz": 8}  # no model_kwargs
    incomplete = tmp_path / "incomplete.safetensors"
    save_file(load_weights(digits_weights)[0], str(incomplete), metadata={"foveal": json.dumps(meta)})
    for mode in ("val", "predict", "info"):
        result = main_in_process(capsys, "classify", mode, f"weights={incomplete}", "source=nothing/here.png",
                                 f"project={project}")
        assert_one_line_error(result, f"weights: {incomplete}: the foveal metadata lacks model_kwargs")

    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the project folder should be")
    below_a_file = main_in_process(capsys, "classify", "train", "data=digits", "model=mlp", "imgsz=8", "epochs=1",
                                   "workers=0", "threads=1", f"project={blocker / 'runs'}")
    run_folder = blocker / "runs" / "classify" / "exp"
    assert_one_line_error(below_a_file, f"project: cannot create the run folder {run_folder}: ")
    assert run_folders(tmp_path) == []


def test_a_damaged_video_is_foveal_s_line_alone(tmp_path, digits_weights):
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (32, 32))
    for k in range(10):
        writer.write(np.full((32, 32, 3), 20 * k, np.uint8))
    writer.release()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(video.read_bytes()[:len(video.read_bytes()) // 2])  # cut off, with its index (moov)
    result = run_cli("classify", "predict", f"weights={digits_weights}", f"source={damaged}",
                     f"project={tmp_path / 'runs'}")
    assert_one_line_error(result, f"source: cannot open video {damaged} (unsupported format or damaged file)")


def test_export_to_onnx_and_use_it_in_val_predict_and_info(digits_weights, tmp_path):
    weights = tmp_path / "digits.safetensors"
    weights.write_bytes(digits_weights.read_bytes())
    result = run_cli("classify", "export", f"weights={weights}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 x 3 x 8 x 8" in result.stdout
    onnx_file = tmp_path / "digits.onnx"
    tops = [foveal.val("classify", weights=w, project=tmp_path, verbose=False).metrics for w in (weights, onnx_file)]
    assert tops[1]["top1"] == pytest.approx(tops[0]["top1"], abs=1e-3) and tops[0]["top1"] > 0.5
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(image)
    guesses = [foveal.predict("classify", weights=w, source=image)[0].predictions[0]["top"]
               for w in (weights, onnx_file)]
    assert [g["class"] for g in guesses[0]] == [g["class"] for g in guesses[1]]
    np.testing.assert_allclose([g["score"] for g in guesses[1]], [g["score"] for g in guesses[0]], atol=1e-4)
    assert foveal.info("classify", weights=onnx_file, verbose=False)  # the metadata travels in the file
    again = run_cli("classify", "export", f"weights={onnx_file}")
    assert again.returncode == 2 and "already exported" in again.stderr and "Traceback" not in again.stderr


def test_weights_of_another_task_or_class_count(tmp_path, colour_folder, digits_weights, capsys):
    weights = digits_weights
    wrong_data = main_in_process(capsys, "classify", "val", f"weights={weights}", f"data={colour_folder}",
                                 f"project={tmp_path}")
    assert wrong_data.returncode == 2 and "differ from the weights'" in wrong_data.stderr
    wrong_arch = main_in_process(capsys, "classify", "train", f"data={colour_folder}", "model=simple_cnn",
                                 f"pretrained={weights}", f"project={tmp_path}")
    assert wrong_arch.returncode == 2 and "holds weights for 'mlp', not 'simple_cnn'" in wrong_arch.stderr


# ---- bugs: one line naming the exception and the log that holds the traceback, exit code 1 ------

def broken_run(make_run_folder: bool, project):
    """A stand-in for foveal.api.run that fails as a bug would, after making a run folder or not."""

    def run(task, mode, **overrides):
        if make_run_folder:
            runs.new_run_dir(str(project), task)
        raise ValueError("something inside foveal broke\nsecond line")

    return run


@pytest.mark.parametrize("make_run_folder", [True, False])
def test_a_bug_is_one_line_naming_its_log(tmp_path, monkeypatch, capsys, make_run_folder):
    monkeypatch.setattr(foveal.cli, "run", broken_run(make_run_folder, tmp_path / "runs"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the log goes without a run folder
    (tmp_path / "tmp").mkdir()
    code = foveal.cli.main(["classify", "train", "data=digits"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("foveal: internal error: ValueError: something inside foveal broke (the traceback is in ")
    log = (tmp_path / "runs" / "classify" / "exp" / "error.log" if make_run_folder
           else next((tmp_path / "tmp").glob("foveal-error-*.log")))
    assert str(log) in err
    text = log.read_text()
    assert "foveal classify train data=digits" in text and "Traceback" in text and "second line" in text


def test_debug_true_prints_the_traceback_instead(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(foveal.cli, "run", broken_run(False, tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = foveal.cli.main(["classify", "train", "data=digits", "debug=true"])  # read from the words: no config built
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "ValueError: something inside foveal broke" in err
    assert not list(tmp_path.glob("foveal-error-*.log"))


def test_a_user_mistake_in_process_stays_exit_code_2(capsys):
    assert foveal.cli.main(["classify", "train", "data=digits", "batch=0", "debug=true"]) == 2
    assert capsys.readouterr().err == "foveal: error: batch: 0 is out of range; valid: >= 1\n"


def test_an_error_inside_a_data_loading_process_is_still_one_line(tmp_path, monkeypatch, capsys, colour_folder):
    # the images pass the check when indexed, then fail to decode in a DataLoader worker (changed since):
    # torch re-raises the worker's FovealError wrapped in its traceback, and the CLI unwraps it
    from foveal.data import images

    monkeypatch.setattr(images, "check_images", lambda paths, cache: {p: (24, 24) for p in paths})
    monkeypatch.setattr(images, "decode", lambda path: (_ for _ in ()).throw(OSError("image file is truncated")))
    code = foveal.cli.main(["classify", "train", f"data={colour_folder}", "workers=1", "epochs=1", "imgsz=16",
                            "verbose=false", f"project={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("foveal: error: ") and "not a readable image (image file is truncated)" in err
