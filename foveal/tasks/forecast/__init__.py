"""Time-series forecasting: the task (task.py), classical baselines (baselines.py), prediction (predict.py), the
report (report.py)."""
