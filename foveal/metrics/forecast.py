"""Forecast accuracy: MAE, RMSE, sMAPE and MASE, overall and per horizon step, as the M4 competition
defines them (/work/shared/METRICS.md).

Every function takes `truth` and `forecast` of one shape (N, H, F): N forecast origins, H horizon steps,
F target columns, in the data's units; "overall" is the mean over every origin, step and column, "per
step" the (H,) means over origins and columns.

  sMAPE  mean of 200 |y - f| / (|y| + |f|), in percent; a step where both are 0 counts 0.
  MASE   MAE divided by the in-sample MAE of the seasonal naive forecast (lag m; m = 1 without a
         season) on the train part of the origin's own series: `scale` (N, F) gives that divisor for
         each origin and column, so many series of different sizes are put on one footing.
"""

import numpy as np


def seasonal_naive_scale(train: np.ndarray, season: int) -> np.ndarray:
    """(F,) mean |y_t - y_(t-m)| over a (T, F) train part, m = season (1 when season <= 1 or too long)."""
    lag = season if 1 < season < len(train) else 1
    scale = np.abs(train[lag:] - train[:-lag]).mean(0)
    return np.where(scale > 0, scale, 1.0)  # a constant train part: MASE becomes plain MAE


def absolute_errors(truth: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(truth, np.float64) - np.asarray(forecast, np.float64))


def mae(truth, forecast, axis=None):
    return absolute_errors(truth, forecast).mean(axis)


def rmse(truth, forecast, axis=None):
    return np.sqrt((absolute_errors(truth, forecast) ** 2).mean(axis))


def smape(truth, forecast, axis=None):
    total = np.abs(np.asarray(truth, np.float64)) + np.abs(np.asarray(forecast, np.float64))
    errors = absolute_errors(truth, forecast)
    ratio = np.divide(200 * errors, total, out=np.zeros_like(errors), where=total > 0)
    return ratio.mean(axis)


def mase(truth, forecast, scale, axis=None):
    """scale: (N, F) seasonal naive MAE of each origin's series, broadcast over the H steps."""
    return (absolute_errors(truth, forecast) / np.asarray(scale, np.float64)[:, None, :]).mean(axis)


METRICS = {"mae": mae, "rmse": rmse, "smape": smape}


def forecast_scores(truth: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> tuple[dict, dict]:
    """({metric: overall value}, {metric: (H,) per-step values}) of a (N, H, F) forecast."""
    overall = {name: float(metric(truth, forecast)) for name, metric in METRICS.items()}
    overall["mase"] = float(mase(truth, forecast, scale))
    per_step = {name: metric(truth, forecast, axis=(0, 2)) for name, metric in METRICS.items()}
    per_step["mase"] = mase(truth, forecast, scale, axis=(0, 2))
    return overall, per_step
