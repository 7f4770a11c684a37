"""Forecasting past the end of the data: `horizon` values after each series' last step, with an interval
made of the val residuals' quantiles, written as forecast.csv (and predictions.json) and forecast.png.

The engine's predict runs a Predictor over Frames; here a Frame is one whole series of data= (its
`pixels` hold the series' (T, F + C) targets and covariates in the data's units, not an image), made by
Task.predict_source. The forecast, its interval and the CSV are of the targets only.
"""

import csv
import io

import cv2
import numpy as np
import torch

from ...data.series import Windows, format_time, future_times
from ...data.stream import Frame
from ...engine.contract import Predictor
from ...engine.results import Forecast
from ...files import write_bytes, write_text
from .report import plot_forecast


def series_frames(task) -> list[Frame]:
    """The series of the data (the weights' own, or data=) as Frames, the task set up with the weights' scaling."""
    task.setup()
    return [Frame(series.name, None, series.inputs, None) for series in task.data.series]


@torch.inference_mode()
def val_residuals(task, model, device) -> np.ndarray | None:
    """(N, H, F) truth - forecast over the val windows, in the data's units; None when there are none."""
    rows = task.data.splits.get("val")
    if rows is None or not len(rows):
        return None
    windows = Windows(task.scaled, rows, task.cfg.window, task.cfg.horizon)
    forecasts = []
    for start in range(0, len(windows), 256):
        x = torch.stack([windows[i][0] for i in range(start, min(start + 256, len(windows)))]).to(device)
        forecasts.append(task.forecast(model, x).cpu().numpy())
    truth = np.stack([task.data.series[s].values[o:o + task.cfg.horizon] for s, o in rows])
    return truth - task.unscale(np.concatenate(forecasts).astype(np.float64))


class ForecastPredictor(Predictor):
    def __init__(self, task, model, device):
        super().__init__(task, model, device)
        self.task = task
        residuals = val_residuals(task, model, device)
        tail = (1 - self.cfg.interval) / 2
        # per horizon step and column: the interval widens with the step, as the val errors do
        self.bounds = None if residuals is None else np.quantile(residuals, [tail, 1 - tail], axis=0)  # (2, H, F)
        self.plotted: list[tuple] = []

    @torch.inference_mode()
    def infer(self, values):
        task = self.task
        with self.phase("preprocess"):
            scaled = (values[-task.cfg.window:] - np.array(task.scaling["mean"])) / np.array(task.scaling["std"])
            x = torch.from_numpy(scaled.astype(np.float32))[None].to(self.device)
        with self.phase("inference"):
            forecast = task.forecast(self.model, x)
        with self.phase("postprocess"):
            return task.unscale(forecast[0].cpu().numpy().astype(np.float64))  # (H, F)

    def interval(self, output):
        """(lower, upper) of a forecast, or (None, None) without val windows."""
        return (output + self.bounds[0], output + self.bounds[1]) if self.bounds is not None else (None, None)

    def clip(self, values):
        """nonnegative=true: a count's forecast and interval end at 0 (the interval is the unclipped one's, clipped)."""
        return np.clip(values, 0, None) if self.cfg.nonnegative and values is not None else values

    def clipped(self, output):
        """(forecast, lower, upper) as predict gives them."""
        return (self.clip(output), *map(self.clip, self.interval(output)))

    def annotate(self, frame, output):
        task = self.task
        series = next(s for s in task.data.series if s.name == frame.name)
        times = future_times(series.times, task.data.step, len(output))
        output, lower, upper = self.clipped(output)
        for step, time in enumerate(times):
            entry = {"series": frame.name, "step": step + 1, "time": format_time(time)}
            for column, target in enumerate(task.data.targets):
                entry[target] = float(output[step, column])
                if lower is not None:
                    entry[f"{target}_lower"] = float(lower[step, column])
                    entry[f"{target}_upper"] = float(upper[step, column])
            self.results.append(entry)
        self.plotted.append((series, times, output, lower, upper))
        first = output[:, 0]
        return None, (f"{len(output)} steps from {format_time(times[0])}, {task.data.targets[0]} between "
                      f"{first.min():.4g} and {first.max():.4g}")

    def draw(self, frame, output):
        """The series' forecast.png panel, as pixels."""
        series = next(s for s in self.task.data.series if s.name == frame.name)
        times = future_times(series.times, self.task.data.step, len(output))
        png = plot_forecast([(series, times, *self.clipped(output))], self.task.data.targets[0],
                            self.cfg.interval, self.task.cfg.horizon)
        return None if png is None else cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR),
                                                     cv2.COLOR_BGR2RGB)

    def fields(self, frame, output):
        return {"forecast": Forecast(*self.clipped(output))}

    def finish(self):
        if self.cfg.save and self.results:
            buffer = io.StringIO(newline="")
            writer = csv.DictWriter(buffer, fieldnames=list(self.results[0]))
            writer.writeheader()
            writer.writerows(self.results)
            write_text(self.run_dir / "forecast.csv", buffer.getvalue())
            png = plot_forecast(self.plotted, self.task.data.targets[0], self.cfg.interval, self.task.cfg.horizon)
            if png is not None:
                write_bytes(self.run_dir / "forecast.png", png)
        interval = f"{self.cfg.interval:.0%} interval from the val residuals" if self.bounds is not None else "no interval (no val windows)"
        return f"forecast {self.task.cfg.horizon} steps ahead, {interval}"
