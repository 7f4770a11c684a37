"""User mistakes that only show once the input meets the model, the disk or a weights file: each is one
FovealError line naming the key or the file."""

import json

import pytest
import torch
from safetensors.torch import save_file

import foveal
from foveal.engine import runs
from foveal.engine.checkpoint import load_trained, load_weights
from foveal.errors import FovealError


# ---- model input sizes -------------------------------------------------------------------------

@pytest.mark.parametrize("name,imgsz,message", [
    ("vit_b_16", 100, "imgsz: 100 is not a multiple of vit_b_16's patch size 16 (try 96 or 112)"),
    ("vit_b_32", 16, "imgsz: 16 is not a multiple of vit_b_32's patch size 32 (try 32)"),
    ("maxvit_t", 64, "imgsz: 64 does not suit maxvit_t (multiples of 224 do): Input size (16, 16) of block 0"),
    ("squeezenet1_1", 16, "imgsz: 16 is too small for squeezenet1_1: Given input size: (256x1x1). "
                          "Calculated output size: (256x0x0). Output size is too small"),
    ("inception_v3", 64, "imgsz: 64 is too small for inception_v3: Calculated padded input size"),
    ("simple_cnn", 3, "imgsz: 3 is too small for simple_cnn: its two 2x2 poolings need at least 4"),
])
def test_an_input_size_the_model_cannot_take_is_one_line(name, imgsz, message):
    with pytest.raises(FovealError) as e:
        foveal.create_model(name, num_classes=3, imgsz=imgsz)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_the_size_check_leaves_the_model_as_built():
    model = foveal.create_model("squeezenet1_1", num_classes=3, imgsz=32)
    assert model.training and not any(p.is_meta for p in model.parameters())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


# ---- run folders -------------------------------------------------------------------------------

def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(FovealError, match=r"project: cannot create the run folder .*a_file/classify/exp: "):
        runs.new_run_dir(str(blocker), "classify")
    with pytest.raises(FovealError, match="exists already"):
        runs.new_run_dir(str(tmp_path), "", name="a_file")


def test_new_run_dir_remembers_the_folder_it_made(tmp_path):
    made = runs.new_run_dir(str(tmp_path), "classify")
    assert made == tmp_path / "classify" / "exp" and runs.last_run_dir == made
    assert runs.new_run_dir(str(tmp_path), "classify") == runs.last_run_dir == tmp_path / "classify" / "exp2"


# ---- weights files -----------------------------------------------------------------------------

def write_weights(path, meta) -> str:
    model = foveal.create_model("mlp", num_classes=2, imgsz=4)
    save_file(dict(model.state_dict()), str(path), metadata={"foveal": json.dumps(meta)})
    return str(path)


COMPLETE = {"task": "classify", "model": "mlp", "model_kwargs": {"num_classes": 2, "imgsz": 4},
            "classes": ["a", "b"], "imgsz": 4}


def test_complete_weights_load(tmp_path):
    model, meta = load_trained(write_weights(tmp_path / "w.safetensors", COMPLETE), "classify", torch.device("cpu"))
    assert meta["classes"] == ["a", "b"] and not model.training


@pytest.mark.parametrize("missing", [("model",), ("model_kwargs",), ("classes", "imgsz")])
def test_weights_whose_metadata_lacks_a_field_are_one_line(tmp_path, missing):
    meta = {k: v for k, v in COMPLETE.items() if k not in missing}
    path = write_weights(tmp_path / "w.safetensors", meta)
    with pytest.raises(FovealError) as e:
        load_trained(path, "classify", torch.device("cpu"))
    assert str(e.value) == (f"weights: {path}: the foveal metadata lacks {', '.join(missing)} "
                            "(written by another tool, or edited)")


def test_weights_with_malformed_metadata_are_one_line(tmp_path):
    path = write_weights(tmp_path / "w.safetensors", {**COMPLETE, "model_kwargs": [2, 4]})
    with pytest.raises(FovealError, match=r"malformed model_kwargs \(not a dict\)$"):
        load_trained(path, "classify", torch.device("cpu"))
    with pytest.raises(FovealError, match="holds no foveal classify weights"):
        load_trained(write_weights(tmp_path / "d.safetensors", {**COMPLETE, "task": "detect"}), "classify", "cpu")
    with pytest.raises(FovealError, match="not a JSON object"):
        load_weights(write_weights(tmp_path / "l.safetensors", ["a", "list"]))
