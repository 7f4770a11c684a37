"""foveal: train, evaluate, inspect and deploy vision models, on a laptop CPU or a GPU."""

from .engine import cores

# The load other processes put on the cores is measured from here: a second foveal started at the same
# moment is then importing too, and seen (engine/cores.py). Before torch is imported: a cheap read.
cores.STARTED = cores.cpu_sample()

from .api import TaskAPI, config, info, predict, run, train, val
from .engine.results import Results
from .errors import FovealError
from .registry import create_model, list_models

__version__ = "0.1.0"
classify = TaskAPI("classify")
detect = TaskAPI("detect")
segment = TaskAPI("segment")
restore = TaskAPI("restore")
forecast = TaskAPI("forecast")

__all__ = ["train", "val", "predict", "info", "run", "config", "create_model", "list_models",
           "classify", "detect", "segment", "restore", "forecast", "FovealError", "Results", "__version__"]
