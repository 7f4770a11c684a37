"""Object detection: the task (task.py), prediction on images, video and cameras (predict.py), the report (report.py)."""
