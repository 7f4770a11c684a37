"""`foveal TASK MODE key=value` end to end, and one-line errors with exit code 2."""

import json

import pytest

from .conftest import run_cli


def test_train_val_predict_info_through_the_cli(tmp_path, colour_folder):
    common = ["imgsz=16", "workers=0", f"project={tmp_path}"]
    train = run_cli("classify", "train", f"data={colour_folder}", "model=simple_cnn", "epochs=2", "batch=8",
                    "name=cli", *common)
    assert train.returncode == 0, train.stderr
    assert "epoch 2/2" in train.stdout and "report:" in train.stdout
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

    info = run_cli("classify", "info", "model=resnet18", "imgsz=224")
    assert info.returncode == 0 and "11,689,512 parameters" in info.stdout and "1.814 GMACs" in info.stdout


def test_models_and_help():
    models = run_cli("models", "classify")
    assert models.returncode == 0 and {"simple_cnn", "resnet50", "vit_b_16", "convnext_tiny"} <= set(models.stdout.split())
    keys = run_cli("classify", "help")
    assert keys.returncode == 0 and "label_smoothing" in keys.stdout
    assert run_cli().returncode == 0


@pytest.mark.parametrize("args,message", [
    (["classify", "train", "data=digits", "epoch=3"], "unknown key 'epoch' (did you mean 'epochs'?)"),
    (["classify", "train", "data=digits", "model=resnet5"], "unknown model 'resnet5' (did you mean 'resnet50'?)"),
    (["classify", "train", "data=no/such/folder"], "data: no such file or folder: no/such/folder"),
    (["classify", "train", "data=digits", "epochs=many"], "epochs: expected an integer, got 'many'"),
    (["classify", "val", "weights=missing.safetensors"], "weights: no such file: missing.safetensors"),
    (["classify", "predict", "weights=w.safetensors", "source=nothing/here.png"], "no such file"),
    (["classify", "fly"], "unknown mode 'fly'"),
    (["clasify", "train"], "unknown task 'clasify' (did you mean 'classify'?)"),
    (["classify", "train", "epochs"], "expected key=value, got 'epochs'"),
    (["classify", "train", "data=digits", "device=cuda"], "no CUDA GPU is available"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    result = run_cli(*args, f"project={tmp_path}" if len(args) > 1 and args[1] in ("train",) else "verbose=true",
                     cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_weights_of_another_task_or_class_count(tmp_path, colour_folder):
    train = run_cli("classify", "train", "data=digits", "model=mlp", "imgsz=8", "epochs=1", "workers=0",
                    f"project={tmp_path}", "name=digits")
    assert train.returncode == 0, train.stderr
    weights = tmp_path / "classify" / "digits" / "best.safetensors"
    wrong_data = run_cli("classify", "val", f"weights={weights}", f"data={colour_folder}", f"project={tmp_path}")
    assert wrong_data.returncode == 2 and "differ from the weights'" in wrong_data.stderr
    wrong_arch = run_cli("classify", "train", f"data={colour_folder}", "model=simple_cnn", f"pretrained={weights}",
                         f"project={tmp_path}")
    assert wrong_arch.returncode == 2 and "holds weights for 'mlp', not 'simple_cnn'" in wrong_arch.stderr
