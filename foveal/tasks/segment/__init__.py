"""Segmentation: semantic models (semantic.py, the task the CLI names), instance models (instance.py), prediction
(predict.py) and the report (report.py)."""
