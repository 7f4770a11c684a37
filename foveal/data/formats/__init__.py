"""Data sets on disk: detection.py reads the detection `data=` forms (YOLO, COCO, Pascal VOC, mask
folders) and converts between them, segmentation.py the segmentation ones, pose.py the pose ones
(with landmarks.py); common.py holds what their readers share; mot.py reads and writes
MOTChallenge tracking files and folders. The names below are re-exported for callers; no module
here imports this package."""

from .detection import convert, load_detection_data, read_detection_data  # noqa: F401
from .pose import load_pose_data  # noqa: F401
from .segmentation import load_segmentation_data  # noqa: F401
