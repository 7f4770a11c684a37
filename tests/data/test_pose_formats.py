"""Pose data readers (COCO keypoints, YOLO-pose, landmark CSVs, the pose data= string) on tiny hand-made
files, with hand-computed keypoints, and every mistake's whole message."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from foveal.data.formats import load_detection_data, load_pose_data
from foveal.data.keypoints import COCO_KEYPOINT_NAMES, COCO_SIGMAS, COCO_SKELETON, mirror_index
from foveal.errors import FovealError

SKIPS = " (strict=false skips it with a warning)"


def write_image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 90, np.uint8))
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error(data: str, **kwargs) -> str:
    with pytest.raises(FovealError) as caught:
        load_pose_data(data, **kwargs)
    return str(caught.value)


def test_mirror_index_from_names():
    assert mirror_index(["nose", "left_eye", "right_eye"]) == [0, 2, 1]
    assert mirror_index(["Left Hand", "Right Hand", "wrist-right", "wrist-left", "bright_spot"]) == [1, 0, 3, 2, 4]
    assert mirror_index(["left_eye", "nose"]) is None  # no pair: nothing to swap
    assert mirror_index(COCO_KEYPOINT_NAMES) == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


# ---- COCO keypoints ------------------------------------------------------------------------------------------

HAND = {"id": 3, "name": "hand", "keypoints": ["left_tip", "right_tip", "palm"], "skeleton": [[1, 3], [2, 3]]}


def coco_file(tmp_path: Path, categories=None, annotations=None, name="ann.json", images="images") -> str:
    write_image(tmp_path / images / "a.png", 40, 30)
    write_image(tmp_path / images / "b.png", 20, 20)
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "b.png", "width": 20, "height": 20}],
        "categories": categories or [HAND, {"id": 5, "name": "cup"}],
        "annotations": annotations or [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 20], "num_keypoints": 2,
             "keypoints": [10, 12, 2, 7, 8, 0, 20.5, 15, 1]},
            {"id": 11, "image_id": 1, "category_id": 5, "bbox": [0, 0, 10, 10]},  # no keypoints: none labelled
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [0, 0, 20, 20], "iscrowd": 1,
             "keypoints": [0] * 9, "num_keypoints": 0}]}
    path = write(tmp_path / name, json.dumps(document))
    return f"coco:{path},{tmp_path / images}"


def test_coco_keypoints_and_layout(tmp_path):
    data = load_pose_data(coco_file(tmp_path), val_fraction=0)
    layout = data.keypoints
    assert layout.names == ["left_tip", "right_tip", "palm"] and layout.skeleton == [(0, 2), (1, 2)]
    assert layout.flip_idx == [1, 0, 2] and layout.sigmas is None
    assert data.classes == ["hand", "cup"] and data.category_ids == [3, 5]
    a, b = data.splits["train"]
    assert a.keypoints.dtype == np.float32 and a.keypoints.shape == (2, 3, 3)
    np.testing.assert_array_equal(a.keypoints[0], [[10, 12, 2], [0, 0, 0], [20.5, 15, 1]])  # v = 0: x = y = 0
    np.testing.assert_array_equal(a.keypoints[1], np.zeros((3, 3)))
    np.testing.assert_array_equal(b.keypoints, np.zeros((1, 3, 3)))
    assert b.crowd.tolist() == [True]
    assert load_detection_data(coco_file(tmp_path)).splits["train"][0].keypoints is None  # detection: boxes only


def test_coco_person_keypoints_folder_gets_coco_layout(tmp_path):
    person = {"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINT_NAMES),
              "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}
    points = [0] * 51
    points[15:18] = [30, 10, 2]  # left_shoulder
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 30, 20], "keypoints": points}
    coco_file(tmp_path, [person], [annotation], "annotations/person_keypoints_train2017.json", "train2017")
    data = load_pose_data(f"coco:{tmp_path}", val_fraction=0)
    assert list(data.splits) == ["train"]
    layout = data.keypoints
    assert layout.names == list(COCO_KEYPOINT_NAMES) and layout.skeleton == list(COCO_SKELETON)
    assert layout.sigmas == list(COCO_SIGMAS) and layout.flip_idx == mirror_index(COCO_KEYPOINT_NAMES)
    np.testing.assert_array_equal(data.splits["train"][0].keypoints[0, 5], [30, 10, 2])


def bad_annotation(**change) -> list:
    return [{"id": 10, "image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 20], **change}]


def test_coco_keypoint_mistakes(tmp_path):
    json_path = tmp_path / "ann.json"
    place = f"{json_path}: annotation id 10"
    assert error(coco_file(tmp_path, annotations=bad_annotation(keypoints=[1, 2, 2, 3, 4, 2]))) == (
        f"{place}: keypoints must be x, y, v for each of the 3 joints: 9 numbers, found 6 values{SKIPS}")
    assert error(coco_file(tmp_path, annotations=bad_annotation(keypoints=[1, 2, 3, 0, 0, 0, 5, 5, 2]))) == (
        f"{place}: keypoint 0 (left_tip) has visibility 3; use 0 (not labelled), 1 (labelled, hidden) "
        f"or 2 (visible){SKIPS}")
    assert error(coco_file(tmp_path, annotations=bad_annotation(keypoints=[1, 2, 2, 0, 0, 0, 0, 0, 0],
                                                                  num_keypoints=3))) == (
        f"{place}: num_keypoints is 3 but 1 joints have v > 0{SKIPS}")
    assert error(coco_file(tmp_path, annotations=bad_annotation(keypoints=[1, 2, 2, 0, 0, 0, 45, 5, 2]))) == (
        f"{place}: keypoint 2 (palm) at x, y = 45, 5 px lies outside the 40x30 image{SKIPS}")
    assert error(coco_file(tmp_path, annotations=bad_annotation(keypoints=[1, 2, 2, 0, 0, "a", 0, 0, 0]))) == (
        f"{place}: keypoints: 'a' is not a number{SKIPS}")
    assert error(coco_file(tmp_path, annotations=bad_annotation(category_id=5, keypoints=[1, 2, 2] * 3))) == (
        f"{place}: has keypoints but its category id 5 names none (give that category a 'keypoints' list of "
        f"joint names)")
    out_of_range = {**HAND, "skeleton": [[1, 3], [0, 2]]}
    assert error(coco_file(tmp_path, [out_of_range])) == (
        f"{json_path}: category id 3 (hand): skeleton pair [0, 2] is out of range: COCO numbers the 3 joints "
        f"from 1 to 3")
    assert error(coco_file(tmp_path, [{"id": 3, "name": "hand"}])) == (
        f"{json_path}: no category names keypoints (a COCO keypoints file gives its person category "
        f"'keypoints': [joint names] and 'skeleton')")
    assert error(coco_file(tmp_path, [HAND, {"id": 4, "name": "foot", "keypoints": ["heel"]}])) == (
        f"{json_path}: category id 4 (foot): its keypoints or skeleton differ from those of category id 3; "
        f"one pose data set has one joint list")


def test_coco_bad_keypoints_skipped_without_strict(tmp_path):
    data = coco_file(tmp_path, annotations=bad_annotation(keypoints=[1, 2, 7] * 3) + [
        {"id": 11, "image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "keypoints": [1, 2, 2] * 3}])
    with pytest.warns(UserWarning, match="skipped 1 bad label"):
        pose = load_pose_data(data, strict=False, val_fraction=0)
    assert [Path(item.image).name for item in pose.splits["train"]] == ["b.png"]


# ---- YOLO-pose ---------------------------------------------------------------------------------------------

def yolo_set(tmp_path: Path, extra: str = "kpt_shape: [3, 3]\nflip_idx: [1, 0, 2]\n"
                                         "kpt_names: [left_tip, right_tip, palm]\n",
             label: str = "0 0.5 0.5 0.5 0.4 0.25 0.5 2 0 0 0 0.75 0.1 1\n") -> Path:
    write_image(tmp_path / "images/train/a.png", 40, 30)
    write_image(tmp_path / "images/train/b.png", 20, 20)
    write(tmp_path / "labels/train/a.txt", label)
    return write(tmp_path / "data.yaml", f"train: images/train\nnames: [hand]\n{extra}")


def test_yolo_pose_keypoints(tmp_path):
    data = load_pose_data(str(yolo_set(tmp_path)), val_fraction=0)
    assert data.keypoints.names == ["left_tip", "right_tip", "palm"] and data.keypoints.flip_idx == [1, 0, 2]
    assert data.keypoints.skeleton == [] and data.keypoints.sigmas is None
    a, b = data.splits["train"]
    np.testing.assert_allclose(a.boxes, [[10, 9, 30, 21]])
    np.testing.assert_allclose(a.keypoints, [[[10, 15, 2], [0, 0, 0], [30, 3, 1]]])
    assert b.keypoints.shape == (0, 3, 3) and b.keypoints.dtype == np.float32  # no label file: no objects
    boxes_only = load_detection_data(str(tmp_path), val_fraction=0)  # a detection read takes the boxes
    np.testing.assert_allclose(boxes_only.splits["train"][0].boxes, [[10, 9, 30, 21]])
    assert boxes_only.keypoints is None and boxes_only.splits["train"][0].keypoints is None
    again = load_pose_data(str(tmp_path), val_fraction=0)  # from the label cache
    np.testing.assert_array_equal(again.splits["train"][0].keypoints, a.keypoints)


def test_yolo_pose_two_numbers_per_point_and_coco_default(tmp_path):
    # x y only: (0, 0) and a point outside the image are unlabelled, the others visible
    points = " ".join(["0.5 0.5", "0 0", "1.5 0.5"] + ["0.25 0.25"] * 14)
    data = load_pose_data(str(yolo_set(tmp_path, "kpt_shape: [17, 2]\n", f"0 0.5 0.5 1 1 {points}\n")),
                          val_fraction=0)
    assert data.keypoints.names == list(COCO_KEYPOINT_NAMES) and data.keypoints.sigmas == list(COCO_SIGMAS)
    assert data.keypoints.skeleton == list(COCO_SKELETON) and data.keypoints.flip_idx[1:3] == [2, 1]
    keypoints = data.splits["train"][0].keypoints[0]
    np.testing.assert_allclose(keypoints[:4], [[20, 15, 2], [0, 0, 0], [0, 0, 0], [10, 7.5, 2]])
    plain = load_pose_data(str(yolo_set(tmp_path / "b", "kpt_shape: [1, 2]\n", "0 0.5 0.5 1 1 0.5 0.5\n")))
    assert plain.keypoints.names == ["0"] and plain.keypoints.flip_idx is None


def test_yolo_pose_mistakes(tmp_path):
    yaml_path = tmp_path / "data.yaml"
    assert error(str(yolo_set(tmp_path, "kpt_shape: [3, 3]\nflip_idx: [1, 0]\n"))) == (
        f"{yaml_path}: flip_idx has 2 entries but kpt_shape says 3 keypoints; give each keypoint the index of its "
        f"mirror image (its own for a middle joint)")
    assert error(str(yolo_set(tmp_path, "kpt_shape: [3, 3]\nflip_idx: [1, 1, 2]\n"))) == (
        f"{yaml_path}: flip_idx [1, 1, 2] is not a permutation of 0..2: every keypoint must appear once (missing 0)")
    assert error(str(yolo_set(tmp_path, "kpt_shape: [3, 3]\nflip_idx: [1, 0, 3]\n"))) == (
        f"{yaml_path}: flip_idx [1, 0, 3] is not a permutation of 0..2: every keypoint must appear once (missing 2)")
    assert error(str(yolo_set(tmp_path, "kpt_shape: [3, 4]\n"))) == (
        f"{yaml_path}: kpt_shape must be [K, 2] or [K, 3] (K keypoints of x, y or x, y, visibility), found [3, 4]")
    assert error(str(yolo_set(tmp_path, "kpt_shape: 17\n"))) == (
        f"{yaml_path}: kpt_shape must be [K, 2] or [K, 3] (K keypoints of x, y or x, y, visibility), found 17")
    assert error(str(yolo_set(tmp_path, ""))) == (
        f"{yaml_path}: no kpt_shape: pose data gives kpt_shape: [K, 2] or [K, 3] (K keypoints of x, y or x, y, "
        f"visibility)")
    assert error(str(yolo_set(tmp_path, "kpt_shape: [3, 3]\nkpt_names: [a, b]\n"))) == (
        f"{yaml_path}: kpt_names must list the 3 keypoint names of kpt_shape, found ['a', 'b']")
    assert error(str(yolo_set(tmp_path, "kpt_shape: [3, 3]\nskeleton: [[0, 3]]\n"))) == (
        f"{yaml_path}: skeleton: [0, 3] is not a pair of keypoint indices 0..2")
    label = tmp_path / "labels/train/a.txt"
    assert error(str(yolo_set(tmp_path, "kpt_shape: [3, 3]\n", "0 0.5 0.5 0.5 0.4\n0 0.5 0.5 0.5 0.4 1 1\n"))) == (
        f"{label}:1: expected 14 fields, 'class cx cy w h' then 'x y v' for each of the 3 keypoints of kpt_shape "
        f"[3, 3], found 5{SKIPS}")
    assert error(str(yolo_set(tmp_path, "kpt_shape: [2, 2]\n", "0 0.5 0.5 0.5 0.4 1 1\n"))) == (
        f"{label}:1: expected 9 fields, 'class cx cy w h' then 'x y' for each of the 2 keypoints of kpt_shape "
        f"[2, 2], found 7{SKIPS}")
    assert error(str(yolo_set(tmp_path, "kpt_shape: [1, 3]\n", "0 0.5 0.5 0.5 0.4 0.5 0.5 5\n"))) == (
        f"{label}:1: keypoint 0 (0) has visibility 5; use 0 (not labelled), 1 (labelled, hidden) or 2 "
        f"(visible){SKIPS}")
    assert error(str(yolo_set(tmp_path, "kpt_shape: [1, 3]\n", "0 0.5 0.5 0.5 0.4 1.5 0.5 2\n"))) == (
        f"{label}:1: keypoint 0 (0) at x, y = 60, 15 px lies outside the 40x30 image{SKIPS}")


# ---- landmark folders -----------------------------------------------------------------------------------------

def landmark_folder(tmp_path: Path, table: str) -> Path:
    write_image(tmp_path / "images/a.png", 40, 30)
    write_image(tmp_path / "images/b.png", 20, 20)
    write(tmp_path / "points.csv", table)
    return tmp_path


def test_landmarks_with_header(tmp_path):
    folder = landmark_folder(tmp_path, "image,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y\n"
                                       "a.png,10,10,30,10,20,20\nb.png,5,5,,,15,15\n")
    data = load_pose_data(f"landmarks:{folder / 'images'},{folder / 'points.csv'}", val_fraction=0)
    assert data.classes == ["object"]
    assert data.keypoints.names == ["left_eye", "right_eye", "nose"] and data.keypoints.flip_idx == [1, 0, 2]
    a, b = data.splits["train"]
    np.testing.assert_array_equal(a.keypoints, [[[10, 10, 2], [30, 10, 2], [20, 20, 2]]])
    np.testing.assert_allclose(a.boxes, [[8, 9, 32, 21]])  # 20 x 10 of landmarks, padded 2 and 1 on each side
    np.testing.assert_array_equal(b.keypoints, [[[5, 5, 2], [0, 0, 0], [15, 15, 2]]])
    np.testing.assert_allclose(b.boxes, [[4, 4, 16, 16]])
    assert a.labels.tolist() == [0] and a.crowd.tolist() == [False]
    same = load_pose_data(str(folder))  # a folder of images/ and one .csv; one image split off as val
    assert sorted(len(items) for items in same.splits.values()) == [1, 1]


def test_landmarks_without_header_are_numbered(tmp_path):
    folder = landmark_folder(tmp_path, "a.png,0,0,40,30\n")
    data = load_pose_data(f"landmarks:{folder}", val_fraction=0)
    assert data.keypoints.names == ["0", "1"] and data.keypoints.flip_idx is None
    np.testing.assert_allclose(data.splits["train"][0].boxes, [[0, 0, 40, 30]])  # padding clipped to the image


def test_landmark_mistakes(tmp_path):
    table = tmp_path / "points.csv"
    data = f"landmarks:{tmp_path / 'images'},{table}"
    landmark_folder(tmp_path, "image,eye_x,eye_y\na.png,1,2,3\n")
    assert error(data) == (f"{table}:2: expected 3 fields (the image, then x, y of each of the 1 landmarks), "
                           f"found 4{SKIPS}")
    landmark_folder(tmp_path, "image,eye_x,eye_y\na.png,1,2\na.png,3,4\n")
    assert error(data) == f"{table}:3: image a.png is already on line 2; an image has one object{SKIPS}"
    landmark_folder(tmp_path, "image,eye_x,eye_y\nc.png,1,2\n")
    assert error(data) == f"{table}:2: image {tmp_path / 'images/c.png'} not found{SKIPS}"
    landmark_folder(tmp_path, "image,eye_x,eye_y\na.png,1,x\n")
    assert error(data) == (f"{table}:2: landmark 0 (eye): '1', 'x' is not a pixel position x, y (leave both empty "
                           f"for a landmark not labelled){SKIPS}")
    landmark_folder(tmp_path, "image,eye_x,eye_y\na.png,50,2\n")
    assert error(data) == f"{table}:2: keypoint 0 (eye) at x, y = 50, 2 px lies outside the 40x30 image{SKIPS}"
    landmark_folder(tmp_path, "image,eye_x,nose_y\na.png,1,2\n")
    assert error(data) == (f"{table}:1: header columns 'eye_x', 'nose_y' are not a landmark's x and y (name them "
                           f"like left_eye_x, left_eye_y)")
    landmark_folder(tmp_path, "image,eye_x\n")
    assert error(data) == (f"{table}:1: expected an image file name then x, y of each landmark (an odd count of 3 "
                           f"or more fields), found 2")
    assert error(f"landmarks:{tmp_path / 'images'}") == (
        f"data=landmarks:{tmp_path / 'images'}: {tmp_path / 'images'} holds no images/ folder and one .csv; use "
        f"stickmen, path/to/data.yaml with kpt_shape (YOLO-pose) or a folder holding it, "
        f"coco:person_keypoints.json[,IMAGES/][;VAL.json[,IMAGES/]], coco:FOLDER/, "
        f"landmarks:IMAGES/,POINTS.csv[;VAL_IMAGES/,VAL.csv] or a folder holding images/ and one .csv")


# ---- the pose data= string -------------------------------------------------------------------------------------

def test_pose_data_forms(tmp_path):
    assert load_pose_data("stickmen").keypoints.count == 13
    assert error("voc:somewhere/") == (
        "data=voc:somewhere/: not a pose data set; use stickmen, path/to/data.yaml with kpt_shape (YOLO-pose) or a "
        "folder holding it, coco:person_keypoints.json[,IMAGES/][;VAL.json[,IMAGES/]], coco:FOLDER/, "
        "landmarks:IMAGES/,POINTS.csv[;VAL_IMAGES/,VAL.csv] or a folder holding images/ and one .csv")
    assert error(str(tmp_path)).startswith(f"data={tmp_path}: not a pose data set; use stickmen, ")


# ---- writers: a round trip of the stick figures ---------------------------------------------------------------

@pytest.mark.parametrize("form", ["coco", "yolo"])
def test_written_pose_data_reads_back_the_same(tmp_path, form):
    from foveal.data.formats.coco import write_coco
    from foveal.data.formats.yolo import write_yolo
    from foveal.data.stickmen import stickmen_pose_data

    data = stickmen_pose_data(imgsz=64, n_train=4, n_val=2, n_test=0)
    data.splits.pop("test")
    (write_coco if form == "coco" else write_yolo)(data, tmp_path / "out")
    again = load_pose_data(f"coco:{tmp_path / 'out'}" if form == "coco" else str(tmp_path / "out"), val_fraction=0)
    assert again.keypoints.names == data.keypoints.names and again.keypoints.skeleton == data.keypoints.skeleton
    assert again.keypoints.flip_idx == data.keypoints.flip_idx
    for split in ("train", "val"):
        for before, after in zip(data.splits[split], again.splits[split], strict=True):
            np.testing.assert_allclose(after.boxes, before.boxes, atol=1e-3)
            np.testing.assert_allclose(after.keypoints, before.keypoints, atol=1e-3)
