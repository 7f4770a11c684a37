"""Image classification: the task (task.py), prediction (predict.py), the report (report.py)."""
