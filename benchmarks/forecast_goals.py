"""The forecast goals on the embedded series: each model trained with the defaults (window 24, horizon 12,
30 epochs, seed 0), its val MASE and RMSE against naive, seasonal naive and statsmodels' AutoReg on the
same windows, and the wall time of the fit. Prints a Markdown table.

    python benchmarks/forecast_goals.py --models lstm gru
    python benchmarks/forecast_goals.py recursive=true          # any key=value goes to every training
"""

import argparse
import tempfile
import time

import foveal
from foveal.data.series import EMBEDDED
from foveal.engine.checkpoint import trained_meta


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["lstm", "gru"])
    parser.add_argument("--series", nargs="+", default=list(EMBEDDED))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.overrides)
    print("| series | season | model | MASE | naive | seasonal naive | RMSE | AutoReg RMSE | fit |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as project:
        for series in args.series:
            for model in args.models:
                started = time.perf_counter()
                run = foveal.train("forecast", data=series, model=model, project=project, verbose=False,
                                   **overrides)
                seconds = time.perf_counter() - started
                m, season = run.metrics, trained_meta(run.best, "forecast")["season"]
                print(f"| {series} | {season} | {model} | {m['mase']:.3f} | {m['mase_naive']:.3f} | "
                      f"{m['mase_snaive']:.3f} | {m['rmse']:.4g} | {m['rmse_autoreg']:.4g} | {seconds:.0f} s |",
                      flush=True)


if __name__ == "__main__":
    main()
