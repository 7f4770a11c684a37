"""Time-series forecasting on the shared engine: recurrent, MLP and linear AR networks against the
classical forecasts they must beat.

A model reads `window` scaled past steps and returns the next `horizon` all at once
(foveal/models/forecast); with `recursive=true` it is a one-step model instead, trained on the first
step and rolled out `horizon` times in val and predict (each forecast appended to the window, its oldest
step dropped: roll_out). The window holds the targets and, with `covariates=`, further CSV columns the
model reads but does not forecast (scaled alike); everything scored stays on the targets.

Windows come from a chronological split (foveal/data/series.py): val origins are every step of the val
part (or `backtest` of them) whose horizon stays inside it. The same val scores naive, seasonal naive,
mean and statsmodels' AutoReg (baselines.py) on exactly those windows, in the data's units, by
MAE, RMSE, sMAPE and MASE (foveal/metrics/forecast.py); the headline is each
`gain_<baseline>` = 1 - MASE / MASE of the baseline (above 0: the network is better). Prediction
(predict.py) forecasts past the end of the data.
"""

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ...config import TrainConfig, opt
from ...data.series import (EMBEDDED, Windows, column_list, detect_season, fit_scaling, load_series,
                           split_windows)
from ...engine.contract import EvalResult, Evaluator, Task
from ...errors import FovealError
from ...metrics.forecast import forecast_scores, seasonal_naive_scale
from ...registry import create_model
from .baselines import BASELINES, baseline_forecasts

MODES = ("train", "val", "predict", "info", "export", "benchmark", "data")
DEFAULT_HORIZON = 12
MAX_SEASON_LAG = 400  # season detection looks at lags up to a third of the train part, and at most this
PERFECT_MASE = 1e-9  # a baseline's MASE below this is a perfect forecast (AutoReg fits a line to ~1e-13)
BASELINE_WORDS = {"naive": "the naive", "snaive": "the seasonal naive", "mean": "the mean",
                  "autoreg": "AutoReg"}


@dataclass
class ForecastConfig(TrainConfig):
    data: str = opt("", f"the series: {', '.join(EMBEDDED)} (embedded), or a CSV/parquet file (default: "
                        f"synthetic; in val and predict: the weights' own)")
    model: str = opt("lstm", "architecture name (`foveal models forecast` lists them)")
    target: str = opt("", "CSV: the column(s) to forecast, comma-separated (default: every numeric column but "
                          "time= and id=)")
    time: str = opt("", "CSV: the time column (default: the rows in file order, one step apart)")
    id: str = opt("", "CSV in long format: the series id column (one series per value, one model for all)")
    covariates: str = opt("", "CSV: further columns the model reads in its window but does not forecast, "
                              "comma-separated (past covariates: their future values are not needed)")
    window: int = opt(24, "past steps the model sees", range="[1, inf)")
    horizon: int = opt(0, "future steps forecast (0: 12 in training; val and predict: the weights')",
                       range="[0, inf)")
    recursive: bool = opt(False, "train a one-step model and feed its forecasts back `horizon` times (default: "
                                 "direct, all steps at once)")
    season: int = opt(0, "seasonal period in steps, for seasonal naive and MASE (0: detected from the train "
                         "part's autocorrelation; 1: none)", range="[0, inf)")
    layers: int = opt(1, "stacked recurrent layers, or window_mlp's hidden layers", range="[1, inf)")
    hidden: int = opt(64, "units of each recurrent or hidden layer", range="[1, inf)")
    dropout: float = opt(0.0, "dropout between stacked layers and before the head", range="[0, 1)")
    highway: bool = opt(True, "add a linear AR(window) term beside the network (LSTNet's highway; ar is one)")
    loss: str = opt("mse", "training loss, on the scaled series", ("mse", "mae"))
    test_fraction: float = opt(0.0, "share at the end of each series kept for split=test (0: none)", range="[0, 1)")
    backtest: int = opt(0, "score this many forecast origins spread evenly over the val (or test) part (0: every "
                           "step; val: the weights' own)", range="[0, inf)")
    interval: float = opt(0.8, "predict: coverage of the interval made of the val residuals' quantiles",
                          range="(0, 1)")
    save: bool = opt(True, "predict: write forecast.csv and forecast.png")
    nonnegative: bool = opt(False, "predict: clip the forecast and its interval at 0 (counts, amounts: a series "
                                   "that cannot go below zero)")
    epochs: int = opt(30, "number of training epochs")
    batch: int = opt(32, "batch size (per process when run with torchrun)")
    lr: float = opt(1e-2, "initial learning rate")
    weight_decay: float = opt(0.0, "weight decay (not applied to biases and norm layers)")
    warmup_epochs: float = opt(0.0, "linear warm-up length in epochs (fractions allowed)")
    amp: str = opt("off", "mixed precision (off: small recurrent models gain no speed from bf16 on a CPU, and "
                          "lose accuracy)", ("auto", "off", "bf16", "fp16"))
    channels_last: bool = opt(False, "unused: forecast models have no images")
    threads: int = opt(1, "CPU threads for torch (0: every core; 1 by default: a small model's steps are too short "
                          "to split, and on 2 busy cores two threads ran an LSTM step 40-150x slower than one)")


def model_kwargs(cfg, features: int) -> dict:
    """create_model's arguments: `features` targets out, they and the covariates in; a recursive model
    forecasts one step (roll_out makes the horizon of it)."""
    return {"window": cfg.window, "horizon": 1 if cfg.recursive else cfg.horizon, "features": features,
            "covariates": len(column_list(cfg.covariates)), "layers": cfg.layers, "hidden": cfg.hidden,
            "dropout": cfg.dropout, "highway": cfg.highway}


TRAINED_KEYS = ("target", "time", "id", "covariates", "val_fraction", "test_fraction", "recursive")  # weights fix
# their data's columns, split and way of forecasting too, besides the architecture (model_kwargs)


def roll_out(model, window: torch.Tensor, horizon: int) -> torch.Tensor:
    """(B, horizon, F) forecasts of a one-step `model` from scaled windows (B, window, F): forecast the next
    step, append it to the window, drop the window's oldest step, `horizon` times (every input column is
    forecast, so there are no covariates: setup refuses them with recursive=true)."""
    steps = []
    for _ in range(horizon):
        step = model(window).float()[:, :1]
        steps.append(step)
        window = torch.cat([window[:, 1:], step.to(window.dtype)], 1)
    return torch.cat(steps, 1)


class ForecastTask(Task):
    name = "forecast"
    Config = ForecastConfig
    fitness = "gain_naive"
    epoch_columns = ("mae", "mase", "gain_naive")
    items_name = "windows"
    curve_groups = [("loss (scaled)", ["train_loss", "val_loss"]),
                    ("val MASE", ["mase", *(f"mase_{b}" for b in BASELINES)]), ("learning rate", ["lr"])]
    embedded = EMBEDDED
    inputs, input_name = "series", "series"
    speed_unit = "windows/s"
    said_undefined = False  # the warning that a gain is undefined is given once a run

    @classmethod
    def trained_config(cls, cfg, meta):
        """The run's architecture, window, horizon, columns and split; its data unless data= is given (scored
        by the same split rule: a forecast needs the history before its val part); its season unless given."""
        trained, kwargs = meta.get("config", {}), meta["model_kwargs"]
        fixed = {"recursive": False, **{key: trained[key] for key in TRAINED_KEYS if key in trained}}
        fixed.update({key: kwargs[key] for key in ("window", "layers", "hidden", "dropout", "highway")},
                     model=meta["model"], horizon=meta.get("horizon") or kwargs["horizon"])  # a recursive model's
        # kwargs say 1 step: the weights record the steps it forecasts
        if cfg.horizon and cfg.horizon != fixed.get("horizon"):
            raise FovealError(f"horizon: these weights forecast {fixed.get('horizon')} steps; "
                              f"leave horizon= out or give {fixed.get('horizon')}")
        for key in ("target", "time", "id", "covariates"):  # a CSV's columns may be named anew for data=
            if cfg.data and getattr(cfg, key):
                fixed[key] = getattr(cfg, key)
        fixed["backtest"] = cfg.backtest or trained.get("backtest", 0)  # the run's origins unless asked otherwise
        season = cfg.season or meta.get("season", 0)
        return replace(cfg, **fixed, season=season, data=cfg.data or meta.get("data", ""))

    def setup(self):
        # the defaults that depend on the mode, filled in once (and so recorded in the weights)
        self.cfg = replace(self.cfg, data=self.cfg.data or "synthetic", horizon=self.cfg.horizon or DEFAULT_HORIZON)
        cfg = self.cfg
        if cfg.recursive and cfg.covariates:
            raise FovealError("recursive: rolling a forecast out needs the future of every input, and covariates= "
                              "are past only; drop one of them")
        create_model(cfg.model, "forecast", **model_kwargs(cfg, 1))  # refuse a bad model or option before data
        data = load_series(cfg.data, cfg.target, cfg.time, cfg.id, cfg.covariates)
        split_windows(data, cfg.window, cfg.horizon, cfg.val_fraction, cfg.test_fraction, cfg.backtest)
        self.use_data(data)
        if self.meta and self.meta.get("targets") != data.targets:
            raise FovealError(f"target: the data's columns {data.targets} differ from the weights' {self.meta.get('targets')}")
        if self.meta and self.meta.get("covariates", []) != data.covariates:
            raise FovealError(f"covariates: the data's columns {data.covariates} differ from the weights' "
                              f"{self.meta.get('covariates', [])}")
        self.scaling = self.meta["scaling"] if self.meta else fit_scaling(data)
        self.season = self.resolve_season(data)
        mean, std = np.array(self.scaling["mean"]), np.array(self.scaling["std"])
        self.scaled = [((s.inputs - mean) / std).astype(np.float32) for s in data.series]  # targets, covariates
        self.imgsz = cfg.window  # the engine's records have an input size: a forecaster's is its window
        self.references: dict[str, dict] = {}  # split -> truth, baselines and MASE scales (the same every epoch)

    def resolve_season(self, data) -> int:
        """cfg.season, or the one detected on the first series' first target's train part."""
        train_end = data.bounds[0][0]
        season = self.cfg.season or detect_season(data.series[0].values[:train_end, 0],
                                                  min(train_end // 3, MAX_SEASON_LAG))
        if season >= train_end:
            raise FovealError(f"season: {season} steps is not shorter than the train part ({train_end} steps)")
        return season

    def in_memory(self):
        return True

    def dataset(self, split, train):
        return Windows(self.scaled, self.split_items(split), self.cfg.window, self.cfg.horizon, len(self.data.targets))

    def model_kwargs(self):
        return model_kwargs(self.cfg, len(self.data.targets))

    def build_model(self):
        return create_model(self.cfg.model, "forecast", **self.model_kwargs())

    def weights_meta(self):
        # horizon: the steps forecast (a recursive model's kwargs say 1)
        return {**super().weights_meta(), "scaling": self.scaling, "season": self.season, "targets": self.data.targets,
                "covariates": self.data.covariates, "horizon": self.cfg.horizon}

    def loss(self, model, batch):
        x, y, _ = batch
        forecast = model(x).float()
        if self.cfg.recursive:  # a one-step model learns the next step; val rolls it out over the horizon
            y = y[:, :1]
        loss = F.mse_loss(forecast, y) if self.cfg.loss == "mse" else F.l1_loss(forecast, y)
        return loss, {"loss": loss.item()}

    def forward_eval(self, model, batch):
        return self.forecast(model, batch[0])

    def forecast(self, model, x: torch.Tensor) -> torch.Tensor:
        """(B, horizon, F) scaled forecasts of scaled windows x (B, window, F + C), in val and predict alike:
        the model's own, or a recursive model's rolled out."""
        return roll_out(model, x, self.cfg.horizon) if self.cfg.recursive else model(x).float()

    def new_evaluator(self):
        return ForecastEvaluator(self)

    def unscale(self, forecast: np.ndarray) -> np.ndarray:
        """A forecast (..., F) in the data's units: the scaling's first F columns are the targets'."""
        targets = forecast.shape[-1]
        return forecast * np.array(self.scaling["std"][:targets]) + np.array(self.scaling["mean"][:targets])

    def reference(self, split: str) -> dict:
        """Of `split`'s windows, in order: truth (N, H, F), each baseline's forecast (N, H, F), the MASE
        scale (N, F) of each window's series; worked out once (AutoReg's fit is the slow part)."""
        if split not in self.references:
            rows, horizon = self.split_items(split), self.cfg.horizon
            truth, scales, baselines = [], [], {name: [] for name in BASELINES}
            for index, series in enumerate(self.data.series):
                origins = rows[rows[:, 0] == index, 1]
                if not len(origins):
                    continue
                train_end = self.data.bounds[index][0]
                truth.append(series.values[origins[:, None] + np.arange(horizon)])
                scale = seasonal_naive_scale(series.values[:train_end], self.season)
                scales.append(np.repeat(scale[None], len(origins), 0))
                forecasts = baseline_forecasts(series.values, origins, horizon, self.season, train_end, self.cfg.window)
                for name in BASELINES:
                    baselines[name].append(forecasts[name])
            self.references[split] = {"truth": np.concatenate(truth), "scale": np.concatenate(scales),
                                      "baselines": {k: np.concatenate(v) for k, v in baselines.items()}}
        return self.references[split]

    def write_report(self, run_dir, history, result, model):
        from .report import write_forecast_report

        write_forecast_report(self, run_dir, history, result)

    def frames(self, split, count):
        """What predict gets, for benchmark: the history (targets, covariates) before each of `split`'s first
        `count` origins."""
        rows = self.split_items(split)
        if not len(rows):
            raise FovealError(f"split: the data's '{split}' split has no windows: nothing to time")
        return [self.data.series[series].inputs[:origin] for series, origin in rows[:count]]

    def predict_source(self):
        from .predict import series_frames

        return series_frames(self)

    def predictor(self, model, device):
        from .predict import ForecastPredictor

        return ForecastPredictor(self, model, device)

    @classmethod
    def model_for_info(cls, cfg):
        features = len(column_list(cfg.target)) or 1
        return cfg.model, model_kwargs(replace(cfg, horizon=cfg.horizon or DEFAULT_HORIZON), features), cfg.window

    @classmethod
    def info_input(cls, kwargs, imgsz):
        columns = kwargs["features"] + kwargs.get("covariates", 0)
        return ((1, kwargs["window"], columns),
                f"over a window of {kwargs['window']} steps of {columns} column(s), "
                f"forecasting {kwargs['horizon']} step(s) of {kwargs['features']} at once")


class ForecastEvaluator(Evaluator):
    """The network's forecasts of a split's windows, scored with every baseline's on the same windows."""

    def __init__(self, task: ForecastTask):
        self.task = task
        self.forecasts, self.indices, self.loss_sum, self.count = [], [], 0.0, 0

    def update(self, outputs, batch):
        _, target, indices = batch
        difference = outputs - target
        errors = difference ** 2 if self.task.cfg.loss == "mse" else difference.abs()
        self.loss_sum += errors.mean((1, 2)).sum().item()
        self.count += len(target)
        self.forecasts.append(outputs.cpu().numpy())
        self.indices.append(indices.cpu().numpy())

    def compute(self) -> EvalResult:
        if not self.count:
            raise FovealError("the evaluation split has no windows")
        task = self.task
        reference = task.reference(task.eval_split)
        order = np.argsort(np.concatenate(self.indices), kind="stable")
        forecast = task.unscale(np.concatenate(self.forecasts)[order].astype(np.float64))
        truth, scale = reference["truth"], reference["scale"]
        metrics, per_step = forecast_scores(truth, forecast, scale)
        metrics = {"val_loss": self.loss_sum / self.count, **metrics}
        steps = {task.cfg.model: per_step}
        for name, baseline in reference["baselines"].items():
            overall, steps[name] = forecast_scores(truth, baseline, scale)
            metrics.update({f"{key}_{name}": value for key, value in overall.items()})
        perfect = [name for name in reference["baselines"] if metrics[f"mase_{name}"] < PERFECT_MASE]
        for name in reference["baselines"]:  # a gain over a perfect baseline is undefined: nan, not a division
            metrics[f"gain_{name}"] = math.nan if name in perfect else 1 - metrics["mase"] / metrics[f"mase_{name}"]
        if "naive" in perfect:  # the fitness must still rank epochs: by MASE, as the gain would have
            task.fitness = "neg_mase"
            metrics["neg_mase"] = 0.0 - metrics["mase"]  # 0.0 - 0 is 0, where -0.0 would print "-0"
        if perfect and not task.said_undefined:
            task.said_undefined = True
            warnings.warn(f"{', '.join(f'gain_{name}' for name in perfect)}: undefined (nan), as "
                          f"{', '.join(BASELINE_WORDS[name] for name in perfect)} forecast the {task.eval_split} part "
                          f"perfectly (MASE 0: a constant or exactly regular series)"
                          + ("; the best epoch is the one of the lowest MASE (neg_mase)" if "naive" in perfect else ""),
                          stacklevel=2)
        return EvalResult(metrics, {"per_step": steps, "forecast": forecast, "truth": truth,
                                    "baselines": reference["baselines"], "rows": task.split_items(task.eval_split),
                                    "season": task.season})


def data(cfg):
    """`foveal forecast data`: the embedded series, with their length and detected season."""
    for name in EMBEDDED:
        series = load_series(name)
        values = series.series[0].values[:, 0]
        train_end = round(len(values) * (1 - cfg.val_fraction))
        season = detect_season(values[:train_end], min(train_end // 3, MAX_SEASON_LAG))
        print(f"  {name:<10} {len(values):>4} steps of {', '.join(series.targets)}; season {season} "
              f"(detected on the first {train_end} steps)")
