"""The forecast task end to end: every model family learns the synthetic seasonal series (well past the naive
forecast), the metrics agree with scikit-learn and hand-written loops, the baselines with statsmodels, the
split is chronological with scaling fitted on train only, val reproduces training, predict writes its CSV
and plot, a recursive model rolls one step out over the horizon, covariates are read but not forecast, and
bad input is one line with exit code 2."""

import csv

import numpy as np
import pytest
import torch

pytest.importorskip("statsmodels")
pytest.importorskip("pandas")

import foveal  # noqa: E402
from foveal.cli import main  # noqa: E402
from foveal.data.series import (Windows, detect_season, fit_scaling, load_series, split_windows,  # noqa: E402
                                synthetic_series)
from foveal.engine.checkpoint import read_weights_meta  # noqa: E402
from foveal.metrics.forecast import forecast_scores, seasonal_naive_scale  # noqa: E402
from foveal.registry import create_model, list_models  # noqa: E402
from foveal.tasks.forecast.task import roll_out  # noqa: E402
from foveal.tasks.forecast.baselines import (autoreg_forecast, fit_autoreg, history_mean, naive,  # noqa: E402
                                             seasonal_naive)

QUICK = dict(data="synthetic", window=24, horizon=6, hidden=16, epochs=6, workers=0, verbose=False)
MODELS = ("rnn", "lstm", "gru", "bilstm", "window_mlp", "ar")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    project = tmp_path_factory.mktemp("forecast")
    return foveal.train("forecast", model="gru", project=project, name="gru", **QUICK), project


@pytest.mark.parametrize("model", MODELS)
def test_every_model_learns_the_seasonal_series(model, tmp_path):
    run = foveal.train("forecast", model=model, project=tmp_path, **QUICK)
    metrics = run.metrics
    # an untrained network is the naive forecast (gain 0) and a constant one the mean (far worse): on this
    # series with a season of 12 the naive forecast is poor, and the networks must beat it by far
    assert metrics["mase_naive"] > 3
    assert metrics["gain_naive"] > 0.6, metrics
    assert metrics["mase"] < metrics["mase_snaive"] * 1.1, metrics  # about the seasonal naive, or better


def test_the_plain_recurrence_learns_without_the_highway(tmp_path):
    run = foveal.train("forecast", model="lstm", highway=False, project=tmp_path, **{**QUICK, "epochs": 10})
    assert run.metrics["gain_naive"] > 0.5, run.metrics


def test_models_share_one_contract():
    assert set(MODELS) <= set(list_models("forecast"))
    for name in MODELS:
        model = create_model(name, "forecast", window=10, horizon=3, features=2, layers=2, hidden=8)
        x = torch.randn(4, 10, 2, requires_grad=True)
        out = model(x)
        assert out.shape == (4, 3, 2), name
        out.sum().backward()
        assert x.grad is not None


def test_metrics_agree_with_sklearn_and_hand_loops():
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    rng = np.random.default_rng(0)
    truth, forecast = rng.normal(5, 2, (7, 4, 2)), rng.normal(5, 2, (7, 4, 2))
    train = rng.normal(0, 1, (50, 2)).cumsum(0)
    season = 5
    scale = np.repeat(seasonal_naive_scale(train, season)[None], 7, 0)
    overall, per_step = forecast_scores(truth, forecast, scale)
    assert overall["mae"] == pytest.approx(mean_absolute_error(truth.ravel(), forecast.ravel()))
    assert overall["rmse"] == pytest.approx(root_mean_squared_error(truth.ravel(), forecast.ravel()))
    for step in range(4):
        assert per_step["rmse"][step] == pytest.approx(root_mean_squared_error(truth[:, step].ravel(),
                                                                               forecast[:, step].ravel()))
    ratios, smapes = [], []
    for column in range(2):  # M4's MASE by hand: the in-sample seasonal naive MAE of the train part
        denominator = sum(abs(train[t, column] - train[t - season, column]) for t in range(season, 50)) / (50 - season)
        for n in range(7):
            for step in range(4):
                error = abs(truth[n, step, column] - forecast[n, step, column])
                ratios.append(error / denominator)
                smapes.append(200 * error / (abs(truth[n, step, column]) + abs(forecast[n, step, column])))
    assert overall["mase"] == pytest.approx(np.mean(ratios))
    assert overall["smape"] == pytest.approx(np.mean(smapes))


def test_baselines_agree_with_statsmodels_and_hand_loops():
    from statsmodels.tsa.ar_model import AutoReg, ar_select_order

    series = synthetic_series()
    train_end, horizon, origins = 380, 6, np.array([380, 401, 450])
    constant, lags, coefficients = fit_autoreg(series[:train_end], 24)
    selected = ar_select_order(series[:train_end], 24, ic="aic", trend="c").ar_lags
    assert list(lags) == list(selected)
    ours = autoreg_forecast(series, origins, horizon, constant, lags, coefficients)
    fitted = AutoReg(series[:train_end], lags=selected, trend="c").fit().apply(series)  # the same parameters
    for row, origin in enumerate(origins):
        expected = fitted.predict(start=origin, end=origin + horizon - 1, dynamic=True)
        np.testing.assert_allclose(ours[row], expected, rtol=1e-9)
    values = series[:, None]
    for row, origin in enumerate(origins):
        for step in range(horizon):
            assert naive(values, origins, horizon)[row, step, 0] == series[origin - 1]
            assert seasonal_naive(values, origins, horizon, 12)[row, step, 0] == series[origin + step - 12 * (step // 12 + 1)]
            assert history_mean(values, origins, horizon)[row, step, 0] == pytest.approx(series[:origin].mean())


def test_split_is_chronological_and_scaling_sees_train_only():
    data = load_series("synthetic")
    split_windows(data, 24, 6, 0.2, 0.1)
    train_end, val_end = data.bounds[0]
    assert (train_end, val_end) == (480 - 96 - 48, 480 - 48)
    train, val, test = (data.splits[s][:, 1] for s in ("train", "val", "test"))
    assert train.max() + 6 <= train_end  # a train window's targets never reach val
    assert val.min() == train_end and val.max() + 6 <= val_end and test.min() == val_end
    scaling = fit_scaling(data)
    assert scaling["mean"][0] == pytest.approx(data.series[0].values[:train_end].mean())
    data.series[0].values[train_end:] += 1000  # what happens after the train part cannot move the scaling
    assert fit_scaling(data) == scaling
    x, y, _ = Windows([data.series[0].values.astype(np.float32)], data.splits["val"], 24, 6)[0]
    assert x.shape == (24, 1) and y.shape == (6, 1)


def test_season_detection():
    assert detect_season(synthetic_series()[:380], 120) == 12
    assert detect_season(np.random.default_rng(0).normal(size=300), 100) == 1  # white noise: no season


def test_val_reproduces_training_and_predict_writes_csv_and_plot(trained, tmp_path):
    run, _ = trained
    result = foveal.val("forecast", weights=run.best, project=tmp_path, verbose=False)
    for key in ("mase", "rmse", "mase_autoreg", "gain_naive"):
        assert result.metrics[key] == pytest.approx(run.metrics[key], abs=1e-6), key
    (result,) = foveal.predict("forecast", weights=run.best, project=tmp_path, name="p", save=True)
    folder = tmp_path / "forecast" / "p"
    rows = list(csv.DictReader(open(folder / "forecast.csv")))
    assert len(rows) == 6 == len(result.predictions) == len(result.forecast.values)
    assert [int(r["time"]) for r in rows] == list(range(480, 486))  # past the end of the data
    assert all(float(r["value_lower"]) <= float(r["value"]) <= float(r["value_upper"]) for r in rows)
    assert (folder / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    # the weights forecast 6 steps: asking for another horizon is a one-line mistake
    assert main(["forecast", "predict", f"weights={run.best}", "horizon=12", f"project={tmp_path}"]) == 2


@pytest.mark.filterwarnings("ignore:.*missing timestamps")
def test_long_csv_with_gaps_dates_and_many_series(tmp_path):
    pandas = pytest.importorskip("pandas")
    months = pandas.date_range("2000-01-01", periods=120, freq="MS")
    frames = []
    for store, offset in (("a", 0.0), ("b", 5.0)):
        values = offset + np.sin(2 * np.pi * np.arange(120) / 12) + 0.01 * np.arange(120)
        frame = pandas.DataFrame({"date": months.strftime("%Y-%m-%d"), "store": store, "units": values})
        frames.append(frame.drop(index=[30, 31]))  # two months missing in each store
    path = tmp_path / "long.csv"
    data = pandas.concat(frames)
    data.iloc[5, 2] = np.nan  # and one empty cell
    data.to_csv(path, index=False)
    with pytest.warns(UserWarning, match="4 missing timestamps and 5 missing values.*linear interpolation"):
        series = load_series(str(path), "units", "date", "store")
    assert [s.name for s in series.series] == ["a", "b"] and all(len(s.values) == 120 for s in series.series)
    assert series.series[0].values[30, 0] == pytest.approx(np.sin(2 * np.pi * 30 / 12) + 0.3, abs=0.1)
    run = foveal.train("forecast", data=str(path), target="units", time="date", id="store", model="window_mlp",
                       window=12, horizon=3, epochs=2, project=tmp_path, verbose=False, workers=0)
    assert np.isfinite(run.metrics["mase"])
    foveal.predict("forecast", weights=run.best, project=tmp_path, name="p", save=True)
    rows = list(csv.DictReader(open(tmp_path / "forecast" / "p" / "forecast.csv")))
    assert [(r["series"], r["time"][:10]) for r in rows[:4]] == [("a", "2010-01-01"), ("a", "2010-02-01"),
                                                                  ("a", "2010-03-01"), ("b", "2010-01-01")]


@pytest.mark.parametrize("args, message", [
    (["data=sunspot"], "unknown series 'sunspot' (did you mean 'sunspots'?)"),
    (["data={csv}", "target=sales"], "target: no column 'sales'"),
    (["data={csv}", "target=label"], "target: column 'label' of"),
    (["data={csv}", "target=units", "time=when"], "time: no column 'when'"),
    (["data=nile", "window=90"], "window: 90 steps + horizon 12 do not fit in the train part"),
    (["model=lstn"], "unknown model 'lstn' (did you mean 'lstm'?)"),
    (["data={infinite}"], "target: column 'units' of {infinite} holds a non-finite value (row 5: 'inf')"),
    (["data={infinite}"], "leave the cell empty to have it filled as a gap"),
    (["data={latin1}"], "data: {latin1}:4: not UTF-8 text (byte 0xe9 at byte offset 23); save it as UTF-8"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys, args, message):
    path = tmp_path / "sales.csv"
    path.write_text("day,units,label\n" + "".join(f"{k},{k % 7},{'x' if k % 3 else 1}\n" for k in range(60)))
    files = {"csv": path, "infinite": tmp_path / "infinite.csv", "latin1": tmp_path / "latin1.csv"}
    files["infinite"].write_text("units\n" + "".join(f"{'inf' if k == 3 else k % 7}\n" for k in range(60)))
    files["latin1"].write_bytes("day,units\n1,2\n2,3\n3,caf\u00e9\n".encode("latin-1"))  # not UTF-8
    message = message.format(**files)
    code = main(["forecast", "train", *(a.format(**files) for a in args), f"project={tmp_path}", "epochs=1"])
    error = capsys.readouterr().err
    assert code == 2 and message in error, error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "forecast").exists()  # refused before a run folder was made


def test_a_constant_series_trains_with_its_gains_undefined(tmp_path):
    path = tmp_path / "flat.csv"
    path.write_text("units\n" + "5\n" * 60)
    with pytest.warns(UserWarning, match=r"gain_naive, gain_snaive, gain_mean.*undefined \(nan\).*perfectly"):
        run = foveal.train("forecast", data=path, window=8, horizon=3, hidden=4, epochs=2, workers=0, verbose=False,
                           project=tmp_path)
    assert run.metrics["mase_naive"] == 0 and all(np.isnan(run.metrics[f"gain_{b}"]) for b in ("naive", "mean"))
    assert run.metrics["neg_mase"] == -run.metrics["mase"] and run.best.is_file()  # epochs ranked by MASE


def test_info_counts_the_recurrence(capsys):
    assert main(["forecast", "info", "model=lstm", "window=24", "hidden=16"]) == 0
    assert "input (1, 24, 1)" in capsys.readouterr().out
    assert main(["forecast", "info", "model=lstm", "window=24", "hidden=16", "recursive=true"]) == 0
    assert "forecasting 1 step(s) of 1 at once" in capsys.readouterr().out  # the one-step model rolled out
    info = foveal.forecast.info(model="gru", window=10, hidden=8, layers=2, target="a,b", verbose=False)
    model = create_model("gru", "forecast", window=10, horizon=12, features=2, layers=2, hidden=8)
    assert info.total_params == sum(p.numel() for p in model.parameters())
    # per step and layer, 3 gates of (hidden x input) and (hidden x hidden) products: input 2, then 8
    encoder = next(row for row in info.rows if row.name == "encoder")
    assert encoder.macs == 10 * 3 * 8 * ((2 + 8) + (8 + 8))


def test_onnx_export_scores_forecasts_and_benchmarks_as_pytorch(trained, tmp_path):
    run, _ = trained
    weights = tmp_path / "best.safetensors"  # export writes beside the weights: not into the shared fixture's
    weights.write_bytes(run.best.read_bytes())
    graph = foveal.api.run("forecast", "export", weights=weights, dynamic=True, verbose=False)
    assert graph == tmp_path / "best.onnx"
    expected = foveal.val("forecast", weights=weights, project=tmp_path, verbose=False).metrics
    exported = foveal.val("forecast", weights=graph, project=tmp_path, verbose=False).metrics
    for key in ("mase", "rmse", "smape", "mase_autoreg"):
        assert exported[key] == pytest.approx(expected[key], rel=1e-4), key
    forecasts = [foveal.predict("forecast", weights=w)[0].forecast.values for w in (weights, graph)]
    np.testing.assert_allclose(forecasts[1], forecasts[0], rtol=1e-4)
    rows = foveal.api.run("forecast", "benchmark", weights=weights, runs=5, batch=4, project=tmp_path, verbose=False)
    assert [row["format"] for row in rows] == ["pytorch", "onnx"]
    assert rows[1]["gain_naive"] == pytest.approx(rows[0]["gain_naive"], abs=1e-4) and rows[1]["p50_ms"] > 0


def test_test_split_and_backtest_origins(tmp_path):
    run = foveal.train("forecast", model="ar", test_fraction=0.1, backtest=5, project=tmp_path,
                       **{**QUICK, "epochs": 1})
    result = foveal.val("forecast", weights=run.best, split="test", project=tmp_path, verbose=False)
    rows = result.details["rows"]
    assert len(rows) == 5 and rows[:, 1].min() == 480 - 48  # 5 origins, all in the last 10 %
    assert np.isfinite(result.metrics["mase_autoreg"])


@pytest.mark.plots
def test_report_draws_the_comparison(trained, tmp_path):
    run, _ = trained
    foveal.val("forecast", weights=run.best, project=tmp_path, name="v", verbose=False)
    html = (tmp_path / "forecast" / "v" / "report.html").read_text()
    assert html.count("data:image/png") == 1 and "AutoReg (AIC order)" in html and "seasonal naive" in html


def test_roll_out_feeds_each_forecast_back():
    torch.manual_seed(0)
    model = create_model("gru", "forecast", window=5, horizon=1, features=2, hidden=4).eval()
    for parameter in model.parameters():  # a model that is not the naive forecast (its head starts at zero)
        torch.nn.init.normal_(parameter, std=0.5)
    x = torch.randn(3, 5, 2)
    with torch.no_grad():
        rolled = roll_out(model, x, 4)
        path = torch.cat([x, torch.zeros(3, 4, 2)], 1)  # by hand: each step forecast from the 5 steps before it
        for step in range(4):
            path[:, 5 + step] = model(path[:, step:step + 5])[:, 0]
    assert rolled.shape == (3, 4, 2)
    torch.testing.assert_close(rolled, path[:, 5:])
    assert not torch.allclose(rolled[:, 1:], rolled[:, :1].expand(-1, 3, -1))  # not one step repeated


def test_recursive_model_learns_and_val_and_predict_roll_it_out(tmp_path):
    run = foveal.train("forecast", model="gru", recursive=True, project=tmp_path, name="r", **QUICK)
    assert run.metrics["gain_naive"] > 0.6, run.metrics
    meta = read_weights_meta(run.best)
    # the model forecasts one step; the weights forecast 6, one at a time
    assert meta["model_kwargs"]["horizon"] == 1 and meta["horizon"] == 6 and meta["config"]["recursive"] is True
    result = foveal.val("forecast", weights=run.best, project=tmp_path, verbose=False)
    assert result.details["forecast"].shape == result.details["truth"].shape == (len(result.details["rows"]), 6, 1)
    for key in ("mase", "rmse", "mase_autoreg", "gain_naive"):
        assert result.metrics[key] == pytest.approx(run.metrics[key], abs=1e-6), key
    (result,) = foveal.predict("forecast", weights=run.best, project=tmp_path, name="p", save=True)
    rows = list(csv.DictReader(open(tmp_path / "forecast" / "p" / "forecast.csv")))
    assert len(rows) == 6 == len(result.predictions) and [int(r["step"]) for r in rows] == list(range(1, 7))
    assert len({r["value"] for r in rows}) == 6  # six forecasts, not one repeated
    assert all(float(r["value_lower"]) <= float(r["value"]) <= float(r["value_upper"]) for r in rows)


def driven_csv(path, length=400):
    """sales_t = 2 driver_(t-1) + small noise, the driver white noise: sales' own past says nothing of it."""
    rng = np.random.default_rng(0)
    driver = rng.normal(size=length)
    sales = np.concatenate([[0.0], 2 * driver[:-1] + 0.1 * rng.normal(size=length - 1)])
    path.write_text("driver,sales\n" + "".join(f"{d:.6f},{v:.6f}\n" for d, v in zip(driver, sales)))
    return path


def test_covariates_are_read_but_not_forecast(tmp_path):
    path = driven_csv(tmp_path / "driven.csv")
    data = load_series(str(path), covariates="driver")  # no target=: every numeric column but the covariates
    split_windows(data, 8, 2, 0.2, 0.0)
    assert data.targets == ["sales"] and data.covariates == ["driver"]
    train_end = data.bounds[0][0]
    scaling = fit_scaling(data)  # targets, then covariates, on the train part only
    assert scaling["mean"][1] == pytest.approx(data.series[0].covariates[:train_end, 0].mean())
    x, y, _ = Windows([data.series[0].inputs.astype(np.float32)], data.splits["val"], 8, 2, 1)[0]
    assert x.shape == (8, 2) and y.shape == (2, 1)

    settings = dict(data=str(path), model="gru", window=8, horizon=1, hidden=16, epochs=6, workers=0,
                    verbose=False, project=tmp_path)
    alone = foveal.train("forecast", target="sales", name="alone", **settings)
    driven = foveal.train("forecast", covariates="driver", name="driven", **settings)
    assert driven.metrics["mase"] < 0.4 * alone.metrics["mase"], (driven.metrics, alone.metrics)
    meta = read_weights_meta(driven.best)
    assert meta["model_kwargs"]["covariates"] == 1 and meta["config"]["covariates"] == "driver"
    result = foveal.val("forecast", weights=driven.best, project=tmp_path, verbose=False)
    assert result.metrics["mase"] == pytest.approx(driven.metrics["mase"], abs=1e-6)
    foveal.predict("forecast", weights=driven.best, project=tmp_path, name="p", save=True)
    rows = list(csv.DictReader(open(tmp_path / "forecast" / "p" / "forecast.csv")))
    assert list(rows[0]) == ["series", "step", "time", "sales", "sales_lower", "sales_upper"]  # targets only


@pytest.mark.parametrize("args, message", [
    (["covariates=prise"], "covariates: no column 'prise' in"),
    (["covariates=prise"], "(did you mean 'price'?)"),
    (["covariates=units"], "covariates: 'units' is a target column already"),
    (["covariates=price", "recursive=true"], "recursive: rolling a forecast out needs the future of every input"),
])
def test_covariate_mistakes_are_one_line(tmp_path, capsys, args, message):
    path = tmp_path / "sales.csv"
    path.write_text("day,units,price\n" + "".join(f"{k},{k % 7},{k % 5}\n" for k in range(60)))
    code = main(["forecast", "train", f"data={path}", "target=units", *args, f"project={tmp_path}", "epochs=1"])
    error = capsys.readouterr().err
    assert code == 2 and message in error, error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "forecast").exists()
