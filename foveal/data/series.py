"""Data for the forecast task: time series, their chronological split, scaling, and sliding windows.

`data=` is one of
- `synthetic` (embedded): a seeded trend + two-harmonic season (period 12) + Gaussian noise series;
- `sunspots`, `co2`, `nile`, `elnino` (embedded): series that ship inside statsmodels' wheel (no
  download): yearly sunspot numbers 1700-2008, Mauna Loa CO2 (weekly, averaged to months 1958-2001),
  the Nile's yearly flow 1871-1970, and the monthly Pacific sea temperature 1950-2010;
- a CSV (or parquet) file: a time column (`time=`), one or more target columns (`target=`), and in long
  format a series id column (`id=`: one series per value, one model for all of them); `covariates=` names
  further columns the model reads in its window but does not forecast (past covariates: their values up
  to the forecast origin are all it needs).

Gaps: the time step is the most common difference between neighbouring timestamps; missing timestamps
are inserted on that grid, and every missing value is filled by linear interpolation between its
neighbours in time (the nearest value at a series' ends). Both are counted in one warning.

Split, per series and never shuffled across time: the last `test_fraction` of the steps is test, the
`val_fraction` before it val, the rest train. A window's targets lie wholly in one part; its inputs, the
`window` steps before them, may reach back into the part before (that is history, not leakage). Scaling
(mean and std per target and covariate column) is fitted on the train parts only and travels in the weights.
"""

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import FovealError, did_you_mean
from ..files import read_text

EMBEDDED = ("synthetic", "sunspots", "co2", "nile", "elnino")
SYNTHETIC_LENGTH, SYNTHETIC_SEASON = 480, 12


@dataclass
class Series:
    """One series: `values` (T, F) float64 in the data's units, gaps filled, at `times` (T,) (datetime64,
    or step numbers when the data has no time column); `covariates` (T, C) likewise (None: C = 0)."""
    name: str
    times: np.ndarray
    values: np.ndarray
    covariates: np.ndarray | None = None

    @property
    def inputs(self) -> np.ndarray:
        """(T, F + C): the columns a model reads, the targets first (the models' residual is on them)."""
        if self.covariates is None or not self.covariates.shape[1]:
            return self.values
        return np.concatenate([self.values, self.covariates], 1)


@dataclass
class SeriesData:
    series: list[Series]
    targets: list[str]  # the F columns of every series' values
    step: object  # the time between two steps (np.timedelta64, or a number)
    splits: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, 2) rows of (series, origin)
    bounds: list[tuple[int, int]] = field(default_factory=list)  # per series: (train end, val end)
    classes: list[str] = field(default_factory=list)  # none: the engine's contract has them
    covariates: list[str] = field(default_factory=list)  # the C columns of every series' covariates


def require_pandas():
    try:
        import pandas
    except ImportError:
        raise FovealError("forecast needs pandas and statsmodels: pip install 'foveal[forecast]'") from None
    return pandas


def column_list(text: str) -> list[str]:
    """The column names of a comma-separated key (target=, covariates=)."""
    return [column.strip() for column in text.split(",") if column.strip()]


def load_series(data: str, target: str = "", time: str = "", series_id: str = "", covariates: str = "") -> SeriesData:
    """The series of `data` (an embedded name or a CSV/parquet file), gaps filled; not yet split."""
    if not data:
        raise FovealError(f"data: name a series: {', '.join(EMBEDDED)} (embedded), or a CSV/parquet file")
    if data in EMBEDDED:
        if target or time or series_id or covariates:
            raise FovealError(f"target, time, id, covariates: are for CSV files; the embedded '{data}' has its "
                              f"own columns")
        frame, time, columns = embedded_frame(data)
        return frame_series(frame, columns, time, "", data)
    path = Path(data)
    if not path.is_file():
        if not path.suffix:
            raise FovealError(f"data: unknown series '{data}'{did_you_mean(data, EMBEDDED)}; embedded: "
                              f"{', '.join(EMBEDDED)}, or name a CSV/parquet file")
        raise FovealError(f"data: no such file: {data}")
    frame = read_table(path)
    columns, extra = column_list(target), column_list(covariates)
    named = [("time", time), ("id", series_id)] + [("target", c) for c in columns] + [("covariates", c) for c in extra]
    for key, column in named:
        if column and column not in frame.columns:
            raise FovealError(f"{key}: no column '{column}' in {path}{did_you_mean(column, frame.columns)} "
                              f"(columns: {', '.join(map(str, frame.columns))})")
    roles = {time: "the time", series_id: "the id", **{column: "a target" for column in columns}}
    for column in extra:  # a column is read as one thing only
        if column in roles:
            raise FovealError(f"covariates: '{column}' is {roles[column]} column already")
    if not columns:  # every numeric column but the time, the id and the covariates
        columns = [c for c in frame.columns if c not in (time, series_id, *extra) and is_numeric(frame[c])]
        if not columns:
            raise FovealError(f"target: {path} has no numeric column to forecast; name one with target=")
    for key, column in [("target", c) for c in columns] + [("covariates", c) for c in extra]:
        check_numeric(frame[column], column, path, key)
    return frame_series(frame, columns, time, series_id, str(path), extra)


def read_table(path: Path):
    pandas = require_pandas()
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pandas.read_parquet(path)
        return pandas.read_csv(io.StringIO(read_text(path, data_error)))  # read_text names a non-UTF-8 line
    except ImportError as e:  # parquet without pyarrow
        raise FovealError(f"data: {path}: {str(e).splitlines()[0]}") from None
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise FovealError(f"data: {path} cannot be read as a table ({str(e).splitlines()[0]})") from None


def data_error(text: str) -> FovealError:
    return FovealError(f"data: {text}")


def is_numeric(column) -> bool:
    pandas = require_pandas()
    return pandas.api.types.is_numeric_dtype(column) and not pandas.api.types.is_bool_dtype(column)


def check_numeric(column, name: str, path: Path, key: str = "target"):
    """Refuse a target (or covariate) column holding text or an infinite value, naming the first such cell
    (empty cells are gaps, not text; inf is no gap: no neighbour tells what it stands for)."""
    pandas = require_pandas()
    numbers = pandas.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise FovealError(f"{key}: column '{name}' of {path} is not numeric (row {row + 2}: '{column.iloc[row]}')")
    infinite = np.isinf(numbers.to_numpy(np.float64))
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise FovealError(f"{key}: column '{name}' of {path} holds a non-finite value (row {row + 2}: "
                          f"'{column.iloc[row]}'); leave the cell empty to have it filled as a gap")


def embedded_frame(name: str):
    """(DataFrame, time column, target columns) of an embedded series."""
    pandas = require_pandas()
    if name == "synthetic":
        return synthetic_frame(), "", ["value"]
    try:
        import statsmodels.api as sm
    except ImportError:
        raise FovealError("forecast needs pandas and statsmodels: pip install 'foveal[forecast]'") from None
    frame = getattr(sm.datasets, name).load_pandas().data
    if name == "sunspots":
        return frame.rename(columns={"YEAR": "year", "SUNACTIVITY": "sunspots"}), "year", ["sunspots"]
    if name == "nile":
        return frame, "year", ["volume"]
    if name == "co2":  # weekly, with 59 weeks missing: averaged to months, as statsmodels' own examples do
        monthly = frame.resample("MS").mean()
        return monthly.rename_axis("month").reset_index(), "month", ["co2"]
    # elnino: one row a year, a column a month -> one monthly series
    months = [c for c in frame.columns if c != "YEAR"]
    long = frame.melt(id_vars="YEAR", value_vars=months, var_name="name", value_name="temperature")
    long["month"] = pandas.to_datetime(long["YEAR"].astype(int).astype(str) + "-" + long["name"], format="%Y-%b")
    return long.sort_values("month")[["month", "temperature"]], "month", ["temperature"]


def synthetic_series(length: int = SYNTHETIC_LENGTH, season: int = SYNTHETIC_SEASON, seed: int = 0) -> np.ndarray:
    """(length,) trend + season (two harmonics of period `season`) + N(0, 0.25^2) noise; always the same
    series for one seed, whatever the training seed."""
    rng = np.random.default_rng(seed)
    steps = np.arange(length)
    phase = 2 * np.pi * steps / season
    return 10 + 0.02 * steps + 2 * np.sin(phase) + 0.7 * np.cos(2 * phase) + rng.normal(0, 0.25, length)


def synthetic_frame():
    return require_pandas().DataFrame({"value": synthetic_series()})


def frame_series(frame, columns: list[str], time: str, series_id: str, source: str,
                 covariates: list[str] = ()) -> SeriesData:
    """One Series per id (or one), sorted by time, on a regular grid, gaps filled (and counted in one warning);
    `covariates` are filled as the target `columns` are."""
    pandas = require_pandas()
    frame = frame.copy()
    covariates = list(covariates)
    for column in columns + covariates:
        frame[column] = pandas.to_numeric(frame[column], errors="coerce")
    if time:
        times = frame[time]
        if not is_numeric(times):
            try:
                times = pandas.to_datetime(times)
            except (ValueError, TypeError) as e:
                raise FovealError(f"time: column '{time}' of {source} holds no dates or numbers "
                                  f"({str(e).splitlines()[0]})") from None
        if times.isna().any():
            row = int(np.flatnonzero(times.isna().to_numpy())[0])
            raise FovealError(f"time: column '{time}' of {source} has an empty cell (row {row + 2})")
        frame["__time"] = times
    else:
        frame["__time"] = np.arange(len(frame))  # rows in file order, one step apart (per id below)
    single = columns[0] if len(columns) == 1 else "series"  # the name of a lone series
    groups = list(frame.groupby(series_id, sort=True)) if series_id else [(single, frame)]
    if not time and series_id:
        groups = [(name, part.assign(__time=np.arange(len(part)))) for name, part in groups]
    step = common_step(groups, source, time)
    series, inserted, missing = [], 0, 0
    for name, part in groups:
        part = part.sort_values("__time", kind="stable")
        duplicated = part["__time"].duplicated()
        if duplicated.any():
            raise FovealError(f"time: {int(duplicated.sum())} repeated timestamps in {source}"
                              f"{f' (series {name})' if series_id else ''}, e.g. {part['__time'][duplicated].iloc[0]}"
                              f"{'' if series_id else '; long-format data needs id='}")
        grid = regular_grid(part["__time"], step)
        values = part.set_index("__time")[columns + covariates].reindex(grid)
        inserted += len(grid) - len(part)
        missing += int(values.isna().to_numpy().sum())
        empty = values.columns[values.isna().all().to_numpy()]
        if len(empty):
            key = "covariates" if empty[0] in covariates else "target"
            raise FovealError(f"{key}: series {name} of {source} has no value in column '{empty[0]}'")
        values = values.interpolate(method="linear", limit_direction="both").to_numpy(np.float64, copy=True)
        series.append(Series(str(name), np.asarray(grid), values[:, :len(columns)], values[:, len(columns):]))
    if missing:
        warnings.warn(f"{source}: {inserted} missing timestamps and {missing} missing values in all, filled by "
                      f"linear interpolation between neighbours in time (the nearest value at a series' ends)",
                      stacklevel=3)
    return SeriesData(series, columns, step, covariates=covariates)


def common_step(groups, source: str, time: str):
    """The most common difference between neighbouring timestamps, over every series."""
    differences = []
    for _, part in groups:
        ordered = np.sort(part["__time"].to_numpy())
        differences.append(np.diff(ordered))
    differences = np.concatenate(differences) if differences else np.array([])
    differences = differences[differences > differences.dtype.type(0)] if len(differences) else differences
    if not len(differences):
        raise FovealError(f"data: {source} has fewer than two distinct timestamps")
    kinds, counts = np.unique(differences, return_counts=True)
    return kinds[np.argmax(counts)]


def regular_grid(times, step) -> np.ndarray:
    """Timestamps from the first to the last, `step` apart; months and years by the calendar, where the
    most common step of dates is about a month or a year (their lengths in days vary)."""
    pandas = require_pandas()
    first, last = times.min(), times.max()
    if isinstance(step, np.timedelta64):
        days = step / np.timedelta64(1, "D")
        frequency = "MS" if 28 <= days <= 31 else "YS" if 365 <= days <= 366 else pandas.Timedelta(step)
        if isinstance(frequency, str) and first.day != 1:
            frequency = frequency.replace("S", "E") if first.is_month_end else pandas.Timedelta(step)
        grid = pandas.date_range(first, last, freq=frequency)
        return grid.union(pandas.DatetimeIndex(times)).to_numpy()  # off-grid stamps kept, never dropped
    count = int(round((last - first) / step)) + 1
    grid = first + step * np.arange(count)
    return np.union1d(grid, times.to_numpy())


def split_bounds(length: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(train end, val end) of a series of `length` steps: train [0, a), val [a, b), test [b, length)."""
    test = round(test_fraction * length)
    val = round(val_fraction * length)
    return length - val - test, length - test


def split_windows(data: SeriesData, window: int, horizon: int, val_fraction: float, test_fraction: float,
                  backtest: int = 0):
    """Fill data.splits with the (series, origin) rows of every window (origin: the first forecast step),
    and data.bounds; `backtest` > 0 keeps that many val and test origins, spread evenly."""
    rows = {"train": [], "val": [], "test": []}
    data.bounds = []
    for index, series in enumerate(data.series):
        length = len(series.values)
        train_end, val_end = split_bounds(length, val_fraction, test_fraction)
        data.bounds.append((train_end, val_end))
        if train_end < window + horizon:
            raise FovealError(f"window: {window} steps + horizon {horizon} do not fit in the train part of series "
                              f"{series.name} ({train_end} of its {length} steps); lower window= or horizon=")
        for split, start, end in (("train", window, train_end), ("val", train_end, val_end), ("test", val_end, length)):
            origins = np.arange(max(start, window), end - horizon + 1)
            rows[split] += [(index, origin) for origin in origins]
    splits = {}
    for split, pairs in rows.items():
        pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        if split != "train" and backtest and len(pairs) > backtest:
            pairs = pairs[np.unique(np.linspace(0, len(pairs) - 1, backtest).round().astype(int))]
        if len(pairs) or split != "test":
            splits[split] = pairs
    if val_fraction > 0 and not len(splits["val"]):
        raise FovealError(f"val_fraction: the val part of {data.series[0].name} is shorter than horizon {horizon}; "
                          f"raise val_fraction= or lower horizon=")
    data.splits = splits


def fit_scaling(data: SeriesData) -> dict:
    """Mean and std of each target, then each covariate, over the train parts of every series (std 1 for a
    constant column)."""
    train = np.concatenate([s.inputs[:end] for s, (end, _) in zip(data.series, data.bounds)])
    std = train.std(0)
    return {"mean": train.mean(0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def detect_season(values: np.ndarray, max_lag: int, threshold: float = 0.3) -> int:
    """The seasonal period of a (T,) series: the lag of the highest peak of the autocorrelation of its first
    differences (differencing removes a trend, which would otherwise make every lag look alike), among
    lags 2..max_lag that are local maxima above `threshold`; 1 (no season) when there is none."""
    differences = np.diff(values)
    differences = differences - differences.mean()
    variance = float(differences @ differences)
    max_lag = min(max_lag, len(differences) - 2)
    if variance == 0 or max_lag < 3:
        return 1
    acf = np.array([differences[lag:] @ differences[:-lag] / variance if lag else 1.0 for lag in range(max_lag + 2)])
    peaks = [lag for lag in range(2, max_lag + 1)
             if acf[lag] > acf[lag - 1] and acf[lag] >= acf[lag + 1] and acf[lag] > threshold]
    return max(peaks, key=lambda lag: acf[lag]) if peaks else 1


class Windows(Dataset):
    """Items (x, y, index): x the `window` scaled steps before an origin (window, F + C), y the `horizon`
    scaled steps from it of the first `targets` columns (horizon, F; None: every column), float32, for each
    (series, origin) row of `rows`."""

    def __init__(self, scaled: list[np.ndarray], rows: np.ndarray, window: int, horizon: int,
                 targets: int | None = None):
        self.scaled, self.rows, self.window, self.horizon, self.targets = scaled, rows, window, horizon, targets

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        series, origin = self.rows[index]
        values = self.scaled[series]
        return (torch.from_numpy(values[origin - self.window:origin]),
                torch.from_numpy(values[origin:origin + self.horizon, :self.targets]), index)


def future_times(times: np.ndarray, step, horizon: int) -> np.ndarray:
    """The `horizon` timestamps after a series' last: on the calendar frequency pandas infers from its last
    dates (months stay months), else `step` apart."""
    if np.issubdtype(times.dtype, np.datetime64):
        pandas = require_pandas()
        recent = pandas.DatetimeIndex(times[-24:])
        frequency = (pandas.infer_freq(recent) if len(recent) >= 3 else None) or pandas.Timedelta(step)
        return pandas.date_range(recent[-1], periods=horizon + 1, freq=frequency)[1:].to_numpy()
    return times[-1] + step * np.arange(1, horizon + 1)


def format_time(time) -> str:
    """A timestamp as a CSV shows it: 2023-01-01 for a date at midnight, 2009 for a whole step number."""
    if isinstance(time, np.datetime64):
        stamp = require_pandas().Timestamp(time)
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()
    return str(int(time)) if float(time).is_integer() else str(time)
