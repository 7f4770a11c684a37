"""Pose data sets: the pose `data=` string. Pose data is detection data whose objects carry keypoints
(DetectionData.keypoints names them), read by the detection readers with keypoints=True, plus
landmark folders. When only one set is given, a fixed-seed `val_fraction` of its images becomes "val".

    stickmen                                                 foveal's synthetic stick figures (stickmen.py)
    path/to/data.yaml, or a folder holding data.yaml          YOLO-pose: kpt_shape, flip_idx (yolo.py)
    coco:person_keypoints.json[,IMAGES/][;VAL.json[,IMAGES/]] COCO keypoints (coco.py); coco:FOLDER/ finds
                                                             FOLDER/annotations/person_keypoints_<split>*.json
    landmarks:IMAGES/,POINTS.csv[;VAL_IMAGES/,VAL.csv]       one object per image, its points in a CSV
    landmarks:FOLDER/, or FOLDER/ holding images/ + one .csv  (landmarks.py)
"""

from ...errors import FovealError
from ..detection import DetectionData
from ..stickmen import stickmen_pose_data
from .common import absolute, split_off_val
from .detection import read_detection_data
from .landmarks import find_landmark_set, landmark_sets, read_landmarks

FORMS = ("stickmen, path/to/data.yaml with kpt_shape (YOLO-pose) or a folder holding it, "
         "coco:person_keypoints.json[,IMAGES/][;VAL.json[,IMAGES/]], coco:FOLDER/, "
         "landmarks:IMAGES/,POINTS.csv[;VAL_IMAGES/,VAL.csv] or a folder holding images/ and one .csv")


def load_pose_data(data: str, strict: bool = True, val_fraction: float = 0.2) -> DetectionData:
    """The pose data set a `data=` string names (forms in the module docstring), split into train/val."""
    text = str(data).strip()
    if text == "stickmen":
        return stickmen_pose_data()
    kind, _, rest = text.partition(":")
    if kind == "landmarks":
        pose = read_landmarks(landmark_sets(rest, data, FORMS), strict)
    elif kind not in ("coco", "yolo") and find_landmark_set(absolute(text)) is not None:
        pose = read_landmarks({"train": find_landmark_set(absolute(text))}, strict)
    elif kind in ("coco", "yolo") or _is_yolo(text):
        pose = read_detection_data(text, strict, keypoints=True)
    else:
        raise FovealError(f"data={data}: not a pose data set; use {FORMS}")
    pose.splits = split_off_val(pose.splits, val_fraction)
    return pose


def _is_yolo(text: str) -> bool:
    """Whether a plain path names a YOLO data.yaml, or a folder holding one."""
    path = absolute(text)
    return path.is_dir() and (path / "data.yaml").is_file() or path.suffix in (".yaml", ".yml")
