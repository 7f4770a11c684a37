"""The forecast report: curves, the network against every baseline (overall and per horizon step), and
val forecasts drawn over the truth; and the plot predict writes."""

import numpy as np
from matplotlib.figure import Figure

from ...report import Section, Table, plot_curves, write_report
from ...report.plots import _png_bytes, _skipped_when_off
from .baselines import BASELINES

BASELINE_NAMES = {"naive": "naive (last value)", "snaive": "seasonal naive", "mean": "mean of the history",
                  "autoreg": "AutoReg (AIC order)"}
PLOTTED_ORIGINS = 4  # val forecasts drawn per series
HISTORY_SHOWN = 8  # horizons of history drawn before a forecast in predict's plot


def write_forecast_report(task, run_dir, history, result):
    cfg, metrics, details = task.cfg, result.metrics, result.details
    season = f"season {task.season} ({'given' if cfg.season else 'detected from the train part'})"
    reads = f" (covariates {', '.join(task.data.covariates)} read too)" if task.data.covariates else ""
    steps_made = "one step at a time, fed back" if cfg.recursive else "all at once"
    note = (f"{len(details['rows'])} {task.eval_split} windows of {cfg.window} steps{reads} -> {cfg.horizon} "
            f"({steps_made}) of {', '.join(task.data.targets)}, scored in the data's units; MASE divides by the "
            f"train part's seasonal naive MAE ({season}); "
            f"gain = 1 - MASE / MASE of the baseline (above 0: {cfg.model} is better)")
    keys = ("mae", "rmse", "smape", "mase")
    rows = [[cfg.model, *(metrics[k] for k in keys), ""]]
    rows += [[BASELINE_NAMES[b], *(metrics[f"{k}_{b}"] for k in keys), metrics[f"gain_{b}"]] for b in BASELINES]
    steps = details["per_step"]
    step_rows = [[k + 1, *(steps[name]["mase"][k] for name in steps)] for k in range(cfg.horizon)]
    sections = [Section("network against the baselines", [note, Table(["forecast", "MAE", "RMSE", "sMAPE %", "MASE",
                                                                       f"gain of {cfg.model}"], rows)])]
    if history:
        sections.append(Section("training curves", [plot_curves(history, task.curve_groups)]))
    sections.append(Section("MASE per horizon step", [Table(["step", *steps], step_rows)]))
    sections.append(Section("val forecasts over the truth", [plot_val_forecasts(task, details)]))
    write_report(run_dir / "report.html", f"forecast {cfg.model} on {cfg.data} ({task.eval_split})", sections)


@_skipped_when_off
def plot_val_forecasts(task, details) -> bytes:
    """Per series (at most 3): its truth over the scored part, and from PLOTTED_ORIGINS origins spread over
    it the network's forecast (solid) and AutoReg's (dashed), first target column."""
    rows, horizon = details["rows"], task.cfg.horizon
    shown = list(dict.fromkeys(rows[:, 0].tolist()))[:3]
    fig = Figure(figsize=(9, 2.6 * len(shown)), layout="constrained")
    for ax, series_index in zip(fig.subplots(len(shown), 1, squeeze=False)[:, 0], shown):
        series = task.data.series[series_index]
        picked = np.flatnonzero(rows[:, 0] == series_index)
        first, last = rows[picked[0], 1], rows[picked[-1], 1] + horizon
        start = max(0, first - task.cfg.window)
        ax.plot(series.times[start:last], series.values[start:last, 0], color="black", lw=1, label="truth")
        for n, k in enumerate(picked[np.linspace(0, len(picked) - 1, PLOTTED_ORIGINS).round().astype(int)]):
            span = series.times[rows[k, 1]:rows[k, 1] + horizon]
            ax.plot(span, details["forecast"][k, :, 0], color="tab:blue", label=task.cfg.model if not n else None)
            ax.plot(span, details["baselines"]["autoreg"][k, :, 0], color="tab:orange", ls="--",
                    label="AutoReg" if not n else None)
        ax.set_title(f"{series.name}: {task.data.targets[0]}", fontsize=9)
        ax.legend(fontsize=8)
    return _png_bytes(fig)


@_skipped_when_off
def plot_forecast(plotted: list[tuple], target: str, interval: float, horizon: int) -> bytes:
    """Per series (at most 4): the recent history, the forecast and its interval (first target column)."""
    plotted = plotted[:4]
    fig = Figure(figsize=(9, 2.6 * len(plotted)), layout="constrained")
    for ax, (series, times, forecast, lower, upper) in zip(fig.subplots(len(plotted), 1, squeeze=False)[:, 0], plotted):
        recent = slice(-HISTORY_SHOWN * horizon, None)
        ax.plot(series.times[recent], series.values[recent, 0], color="black", lw=1, label="history")
        ax.plot(times, forecast[:, 0], color="tab:blue", marker="o", ms=3, label="forecast")
        if lower is not None:
            ax.fill_between(times, lower[:, 0], upper[:, 0], color="tab:blue", alpha=0.2,
                            label=f"{interval:.0%} interval (val residuals)")
        ax.set_title(f"{series.name}: {target}", fontsize=9)
        ax.legend(fontsize=8)
    return _png_bytes(fig)
