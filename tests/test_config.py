import pytest

from foveal.config import build_config, describe
from foveal.errors import FovealError
from foveal.tasks.classify import ClassifyConfig


def test_defaults_then_yaml_then_key_value(tmp_path):
    yaml_file = tmp_path / "my.yaml"
    yaml_file.write_text("epochs: 7\nlr: 0.01\nmodel: resnet18\n")
    cfg = build_config(ClassifyConfig, {"cfg": str(yaml_file), "lr": "0.5", "ema": "true"})
    assert (cfg.epochs, cfg.lr, cfg.model, cfg.ema, cfg.batch) == (7, 0.5, "resnet18", True, 64)


def test_unknown_key_names_the_key_and_suggests():
    with pytest.raises(FovealError, match=r"unknown key 'epoch' \(did you mean 'epochs'\?\); valid keys: .*batch"):
        build_config(ClassifyConfig, {"epoch": "3"})


@pytest.mark.parametrize("key,value,expected", [
    ("epochs", "ten", "epochs: expected an integer, got 'ten'"),
    ("epochs", "2.5", "epochs: expected an integer"),
    ("lr", "fast", "lr: expected a number, got 'fast'"),
    ("ema", "maybe", "ema: expected true or false, got 'maybe'"),
    ("optimizer", "rmsprop", "optimizer: expected one of sgd, adam, adamw, got 'rmsprop'"),
])
def test_bad_values_are_one_line_errors(key, value, expected):
    with pytest.raises(FovealError) as e:
        build_config(ClassifyConfig, {key: value})
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_yaml_errors(tmp_path):
    with pytest.raises(FovealError, match="cfg: no such file"):
        build_config(ClassifyConfig, {"cfg": str(tmp_path / "missing.yaml")})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(FovealError, match="expected a mapping"):
        build_config(ClassifyConfig, {"cfg": str(bad)})
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("lr0: 0.1\n")
    with pytest.raises(FovealError, match="unknown key 'lr0'"):
        build_config(ClassifyConfig, {"cfg": str(unknown)})


def test_describe_lists_every_key():
    text = describe(ClassifyConfig)
    for key in ("epochs", "lr", "optimizer", "hflip", "resume", "amp"):
        assert f"  {key} " in text
