"""Continue a run from its train_state.pt: the saved config, with only a few keys open to change."""

import dataclasses
from pathlib import Path

from ..config import read_yaml_config
from ..errors import FovealError
from .checkpoint import load_train_state

# What may differ when resuming: more epochs, and how/where to run. Anything else would make the
# continued run a different experiment from the one its first epochs belong to.
RESUME_CHANGES = ("epochs", "patience", "device", "amp", "workers", "threads", "verbose", "debug", "save_period")


def prepare_resume(cfg, given: set[str] | None = None):
    """(config to continue with, saved train state) for `cfg.resume`; `given`: the keys the user typed
    (None: the keys whose value is not the default). The state is None for a run killed before its first
    epoch was saved whole (train_state.pt is written last): it starts again in its folder."""
    path = Path(cfg.resume)
    state_file = path / "train_state.pt" if path.is_dir() else path
    if state_file.is_file():
        state = load_train_state(state_file)
        saved_config = state["config"]
    elif (state_file.parent / "config.yaml").is_file():
        # killed in its first epoch, or while saving it (the state is written last): the run starts again there
        state, saved_config = None, read_yaml_config(state_file.parent / "config.yaml")
    else:
        raise FovealError(f"resume: no train_state.pt in {path} (it is written after each epoch)")
    saved = type(cfg)(**{k: v for k, v in saved_config.items() if k in {f.name for f in dataclasses.fields(cfg)}})
    if given is None:
        defaults = type(cfg)()
        given = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(defaults, f.name)}
    changed = [f.name for f in dataclasses.fields(cfg) if f.name in given and f.name not in ("resume", "cfg")]
    refused = [k for k in changed if k not in RESUME_CHANGES and getattr(cfg, k) != getattr(saved, k)]
    if refused:
        raise FovealError(f"resume: cannot change {', '.join(refused)} of a run; only "
                          f"{', '.join(RESUME_CHANGES)} may differ")
    merged = dataclasses.replace(saved, **{k: getattr(cfg, k) for k in changed if k in RESUME_CHANGES},
                                 resume=str(state_file.parent))
    if state is None:
        return merged, None
    if state.get("stopped_early") and "patience" not in changed:
        raise FovealError(f"resume: {state_file.parent} stopped early at epoch {state['epoch']} (no better val metric "
                          f"in {saved.patience} epochs); pass patience=0 or a larger patience to train on")
    if state["epoch"] >= merged.epochs:
        raise FovealError(f"resume: {state_file.parent} already finished {state['epoch']} epochs; "
                          f"pass epochs=N with N > {state['epoch']} to train longer")
    return merged, state
