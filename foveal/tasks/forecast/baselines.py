"""The classical forecasts every network is scored against, on exactly its windows.

Each takes one series' values (T, F) in the data's units, the origins (N,) (the index of the first step
to forecast; everything before it is known) and the horizon H, and returns (N, H, F):

  naive           the last known value, repeated.
  seasonal naive  the value one season before each step: y_(o + k - m ceil((k + 1) / m)), k = 0..H-1.
  mean            the mean of every known value (of the history up to the origin).
  autoreg         statsmodels' AutoReg with a constant, its order chosen by ar_select_order (AIC, at most
                  `max_lag`) and fitted on the train part once (no refit per origin), then iterated H
                  steps from each origin on the known values, as AutoRegResults.predict(dynamic=) does.
"""

import warnings

import numpy as np

from ...errors import FovealError

BASELINES = ("naive", "snaive", "mean", "autoreg")


def naive(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(values[origins - 1][:, None, :], horizon, 1)


def seasonal_naive(values: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    if season <= 1:
        return naive(values, origins, horizon)
    steps = np.arange(horizon)
    back = origins[:, None] - season + steps[None, :] % season  # (N, H): the same phase one season back
    return values[back]


def history_mean(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    sums = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, 0)])  # sums[t]: of values[:t]
    means = sums[origins] / origins[:, None]
    return np.repeat(means[:, None, :], horizon, 1)


def fit_autoreg(train: np.ndarray, max_lag: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(constant, lags (p,), coefficients (p,)) of AutoReg fitted on a (T,) train part, the order by AIC."""
    try:
        from statsmodels.tsa.ar_model import AutoReg, ar_select_order
    except ImportError:
        raise FovealError("forecast needs pandas and statsmodels: pip install 'foveal[forecast]'") from None
    max_lag = max(1, min(max_lag, len(train) // 2 - 1))
    with warnings.catch_warnings():  # statsmodels' notes on the index of a plain array
        warnings.simplefilter("ignore")
        lags = ar_select_order(train, max_lag, ic="aic", trend="c").ar_lags
        fitted = AutoReg(train, lags=lags or 0, trend="c").fit()
    params = np.asarray(fitted.params, np.float64)
    return float(params[0]), np.asarray(lags or [], np.int64), params[1:]


def autoreg_forecast(values: np.ndarray, origins: np.ndarray, horizon: int, constant: float, lags: np.ndarray,
                     coefficients: np.ndarray) -> np.ndarray:
    """(N, H) forecasts of a (T,) series from each origin: known values before it, forecasts after."""
    reach = int(lags.max()) if len(lags) else 0
    if len(origins) and origins.min() < reach:
        raise FovealError(f"autoreg: an origin at step {origins.min()} has fewer than its {reach} lags before it")
    known = values[origins[:, None] + np.arange(-reach, 0)[None, :]] if reach else np.zeros((len(origins), 0))
    path = np.concatenate([known, np.zeros((len(origins), horizon))], 1)  # (N, reach + H)
    for step in range(horizon):
        now = reach + step
        path[:, now] = constant + path[:, now - lags] @ coefficients if reach else constant
    return path[:, reach:]


def baseline_forecasts(values: np.ndarray, origins: np.ndarray, horizon: int, season: int, train_end: int,
                       max_lag: int) -> dict[str, np.ndarray]:
    """{baseline: (N, H, F) forecast} of one series (T, F) from `origins`; AutoReg fitted per column on
    values[:train_end]."""
    columns = []
    for column in range(values.shape[1]):
        constant, lags, coefficients = fit_autoreg(values[:train_end, column], max_lag)
        columns.append(autoreg_forecast(values[:, column], origins, horizon, constant, lags, coefficients))
    return {"naive": naive(values, origins, horizon), "snaive": seasonal_naive(values, origins, horizon, season),
            "mean": history_mean(values, origins, horizon), "autoreg": np.stack(columns, -1)}
