"""foveal: train, evaluate, inspect and deploy vision models, on a laptop CPU or a GPU."""

import os

# OpenMP threads that wait spin for a while first, taking the cores of whatever else runs (another job, or
# a thread of our own); passive threads sleep (benchmarks/busy_machine.py). Read once, when torch loads
# OpenMP: so set here, before any import of torch, and only where the user has not chosen.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
