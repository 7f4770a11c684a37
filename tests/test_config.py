import math
import typing

import pytest

from foveal.config import _base_type, build_config, describe, fields_of, parse_range, valid_range
from foveal.errors import FovealError
from foveal.tasks.classify.task import ClassifyConfig


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
    ("batch", "0", "batch: 0 is out of range; valid: >= 1"),
    ("lr", "-1", "lr: -1 is out of range; valid: > 0"),
    ("lrf", "nan", "lrf: nan is out of range; valid: (0, 1]"),
    ("hflip", "-0.5", "hflip: -0.5 is out of range; valid: [0, 1] or -1"),
    ("workers", "-2", "workers: -2 is out of range; valid: >= -1"),
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


# ---- valid ranges: every numeric key of every task declares one, and build_config enforces it ------

def numeric_fields() -> list:
    """(config class, key, type) for every int or float key of every task's config."""
    from foveal.api import TASKS, task_class

    found = []
    for task in TASKS:
        cls = task_class(task).Config
        hints = typing.get_type_hints(cls)
        for key in fields_of(cls):
            kind = _base_type(hints[key])
            # bool is its own type here, not a number; a key with a list of choices has no range to declare
            if kind in (int, float) and not fields_of(cls)[key].metadata.get("choices"):
                found.append(pytest.param(cls, key, kind, id=f"{task}-{key}"))
    return found


NUMERIC_FIELDS = numeric_fields()


@pytest.mark.parametrize("cls,key,kind", NUMERIC_FIELDS)
def test_every_numeric_key_declares_a_range_that_holds_its_default(cls, key, kind):
    valid = valid_range(cls, key)
    assert valid is not None, f"{cls.__name__}.{key}: declare its valid values with opt(..., range='[a, b)')"
    assert getattr(cls(), key) in valid


def just_outside(valid, kind) -> list:
    """The values just past each finite bound: the bound itself when open, one step beyond when closed."""
    step = 1 if kind is int else 1e-6
    values = []
    if math.isfinite(valid.low):
        values.append(valid.low if not valid.low_closed else valid.low - step)
    if math.isfinite(valid.high):
        values.append(valid.high if not valid.high_closed else valid.high + step)
    return [kind(v) for v in values if v not in valid.special]


def just_inside(valid, kind) -> list:
    step = 1 if kind is int else 1e-6
    values = [*valid.special]
    if math.isfinite(valid.low):
        values.append(valid.low if valid.low_closed else valid.low + step)
    if math.isfinite(valid.high):
        values.append(valid.high if valid.high_closed else valid.high - step)
    return [kind(v) for v in values]


@pytest.mark.parametrize("cls,key,kind", NUMERIC_FIELDS)
def test_values_just_outside_each_bound_are_refused(cls, key, kind):
    valid = valid_range(cls, key)
    for value in just_outside(valid, kind):
        with pytest.raises(FovealError) as e:
            build_config(cls, {key: str(value)})
        assert str(e.value) == f"{key}: {value} is out of range; valid: {valid}"
    for value in just_inside(valid, kind):
        assert getattr(build_config(cls, {key: str(value)}), key) == value


def test_special_values_outside_a_range_are_accepted():
    cfg = build_config(ClassifyConfig, {"hflip": "-1", "workers": "-1"})
    assert (cfg.hflip, cfg.workers) == (-1, -1)


def test_ranges_apply_to_yaml_values_and_to_re_defaulted_keys(tmp_path):
    from foveal.tasks.detect.task import DetectConfig

    yaml_file = tmp_path / "my.yaml"
    yaml_file.write_text("epochs: 0\n")
    with pytest.raises(FovealError, match=r"epochs: 0 is out of range; valid: >= 1"):
        build_config(ClassifyConfig, {"cfg": str(yaml_file)})
    with pytest.raises(FovealError, match=r"epochs: 0 is out of range"):  # DetectConfig re-defaults epochs only
        build_config(DetectConfig, {"epochs": "0"})


def test_range_notation():
    assert str(parse_range("[1, inf)")) == ">= 1" and str(parse_range("(0, inf)")) == "> 0"
    assert str(parse_range("(0, 1]")) == "(0, 1]" and str(parse_range("[0, 1] or -1")) == "[0, 1] or -1"
    valid = parse_range("[0, 1) or -1")
    assert 0 in valid and 0.5 in valid and -1 in valid and 1 not in valid and -0.5 not in valid
    with pytest.raises(ValueError, match="expected an interval"):
        parse_range(">= 1")


def test_describe_shows_each_range():
    text = describe(ClassifyConfig)
    assert "(valid: >= 1)" in next(line for line in text.splitlines() if line.startswith("  batch "))
    assert "(valid: [0, 1] or -1)" in next(line for line in text.splitlines() if line.startswith("  hflip "))
