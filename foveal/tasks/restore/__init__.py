"""Image restoration (denoising, super-resolution): the task (task.py), prediction (predict.py), the report (report.py)."""
