"""Importing this package registers every model (see foveal/registry.py)."""

from .classify import small, torchvision_zoo  # noqa: F401
from .detect import torchvision_zoo as detect_torchvision_zoo  # noqa: F401
from .detect import rtdetr, yolo  # noqa: F401
from .forecast import linear, recurrent  # noqa: F401
from .pose import hourglass, keypoint_rcnn, yolo_pose  # noqa: F401
from .restore import dncnn, super_resolution  # noqa: F401
from .segment import smp_zoo, unet, yolo_seg  # noqa: F401
from .segment import torchvision_zoo as segment_torchvision_zoo  # noqa: F401
