"""MOTChallenge files and folders: reading, the one-line errors, writing, and the video layout."""

import cv2
import numpy as np
import pytest

from foveal.data.formats.mot import (considered, is_mot_sequence, mot_lines, mot_sequences, read_mot_file,
                                     read_mot_sequence, read_video_sequence, write_mot_sequence)
from foveal.data.tracking import FrameTruth, TrackSequence
from foveal.errors import FovealError


def test_read_mot_file(tmp_path):
    """Commas or spaces, 6 to 10 fields, rows in any order; boxes become x1 y1 x2 y2 counted from 0 (the file's
    pixels count from 1); frames without rows are empty, up to `frames`."""
    path = tmp_path / "gt.txt"
    path.write_text("3, 7, 10, 20, 30, 40, 1, 2, 0.5\n\n1 4 0 0 5 5\n3,8,1.5,2,3,4,0,1,1,-1\n"
                    "4,-1,0,0,1,1\n4,-1,0,0,2,2\n")  # id -1, detections without identity: may repeat
    frames = read_mot_file(path, frames=4)
    assert [len(f.ids) for f in frames] == [1, 0, 2, 2]
    assert frames[2].ids.tolist() == [7, 8] and frames[2].boxes.tolist() == [[9, 19, 39, 59], [0.5, 1, 3.5, 5]]
    assert frames[2].classes.tolist() == [2, 1] and frames[2].visibility.tolist() == [0.5, 1]
    assert frames[0].scores.tolist() == [1] and frames[0].classes.tolist() == [-1]  # the defaults
    assert len(read_mot_file(path)) == 4 and len(read_mot_file(path, frames=6)) == 6
    assert considered(frames[2]).ids.tolist() == [7] and len(considered(frames[2], classes=(1,)).ids) == 0


@pytest.mark.parametrize("line, message", [
    ("1,2,3,4,5", "5 fields, a MOT line needs at least"),
    ("1,2,3,four,5,6", "'four' is not a number"),
    ("0,2,3,4,5,6", "frame 0 is not a whole number from 1"),
    ("1.5,2,3,4,5,6", "frame 1.5 is not"),
    ("1,2.5,3,4,5,6", "id 2.5 is not a whole number"),
    ("1,2,3,4,-5,6", "negative box width"),
    ("1,2,3,nan,5,6", "'nan' is not a finite number"),
    ("9,2,3,4,5,6", "frame 9 is past the sequence's 5 frames"),
    ("1,1,3,4,5,6", "id 1 is in frame 1 twice"),
])
def test_a_bad_line_is_named(tmp_path, line, message):
    path = tmp_path / "gt.txt"
    path.write_text(f"1,1,0,0,10,10,1,1,1\n{line}\n")
    with pytest.raises(FovealError, match=f"gt.txt:2: {message}"):
        read_mot_file(path, frames=5)


def test_mot_lines_read_back(tmp_path):
    text = mot_lines(2, [5, 6], np.array([[1, 2, 11, 22], [0.5, 0, 3, 4.25]]), [0.9, 0.25])
    assert text.splitlines()[0] == "2,5,2.00,3.00,10.00,20.00,0.9000,-1,-1,-1"  # left and top from 1
    (tmp_path / "result.txt").write_text(text)
    frame = read_mot_file(tmp_path / "result.txt")[1]
    assert frame.ids.tolist() == [5, 6] and frame.scores.tolist() == [0.9, 0.25]
    assert np.allclose(frame.boxes, [[1, 2, 11, 22], [0.5, 0, 3, 4.25]])


def small_sequence(frames=4) -> TrackSequence:
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(frames)]
    gt = [FrameTruth(np.array([1, 2 + t], np.int64), np.array([[1, 2, 10.5, 12], [5, 5, 20, 20 - t]], np.float32),
                     np.array([0, 1], np.int64)) for t in range(frames)]
    return TrackSequence("tiny", 25.0, 32, 24, pixels, gt, ["square", "disc"])


def test_a_written_sequence_reads_back(tmp_path):
    sequence = small_sequence()
    folder = write_mot_sequence(tmp_path / "tiny-01", sequence, image_ext=".png")
    assert is_mot_sequence(folder) and (folder / "img1" / "000004.png").is_file()
    cv2.imwrite(str(folder / "img1" / "preview.jpg"), np.zeros((4, 4, 3), np.uint8))  # not of imExt: not a frame
    back = read_mot_sequence(folder)
    assert (back.name, back.fps, back.width, back.height, back.classes) == ("tiny", 25.0, 32, 24, ["square", "disc"])
    assert back.folder == folder and [p.name for p in back.frames] == [f"00000{i}.png" for i in range(1, 5)]
    assert np.array_equal(cv2.imread(str(back.frames[2]))[..., ::-1], sequence.frames[2])  # png: lossless
    for ours, theirs in zip(back.gt, sequence.gt):
        assert np.array_equal(ours.ids, theirs.ids) and np.array_equal(ours.classes, theirs.classes)
        assert np.allclose(ours.boxes, theirs.boxes) and ours.boxes.dtype == np.float32
    copy = read_mot_sequence(write_mot_sequence(tmp_path / "copy", back))  # image Paths: copied as they are
    assert [p.read_bytes() for p in copy.frames] == [p.read_bytes() for p in back.frames]
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(copy.gt, back.gt)) and copy.classes == back.classes
    only_discs = read_mot_sequence(folder, classes=(2,))  # file class ids start at 1
    assert [t.ids.tolist() for t in only_discs.gt] == [[2], [3], [4], [5]]


def test_a_folder_without_seqinfo(tmp_path):
    """The name is the folder's, the size the first image's, the frame rate 30; MOT17's class names; gt rows
    flagged 0 are left out; a class of -1 is the first class."""
    folder = write_mot_sequence(tmp_path / "plain", small_sequence(frames=2))
    (folder / "seqinfo.ini").unlink()
    (folder / "gt" / "gt.txt").write_text("1,3,0,0,4,4,1,-1,1\n1,4,0,0,4,4,0,1,1\n2,3,1,1,4,4,1,3,0.5\n")
    back = read_mot_sequence(folder)
    assert (back.name, back.fps, back.width, back.height) == ("plain", 30.0, 32, 24)
    assert back.classes[:3] == ["pedestrian", "person_on_vehicle", "car"] and len(back.frames) == 2
    assert [t.ids.tolist() for t in back.gt] == [[3], [3]] and [t.classes.tolist() for t in back.gt] == [[0], [2]]


def test_sequences_of_a_folder(tmp_path):
    for name in ("b-02", "a-01"):
        write_mot_sequence(tmp_path / "train" / name, small_sequence(frames=1))
    (tmp_path / "train" / "notes").mkdir()
    assert [s.folder.name for s in mot_sequences(tmp_path / "train")] == ["a-01", "b-02"]
    assert [s.name for s in mot_sequences(tmp_path / "train" / "b-02")] == ["tiny"]
    with pytest.raises(FovealError, match="no MOTChallenge sequence there"):
        mot_sequences(tmp_path)


def test_seqinfo_must_agree_with_the_images(tmp_path):
    folder = write_mot_sequence(tmp_path / "s", small_sequence(frames=2))
    info = folder / "seqinfo.ini"
    info.write_text(info.read_text().replace("seqLength=2", "seqLength=3"))
    with pytest.raises(FovealError, match="seqLength=3 but img1/ holds 2 images"):
        read_mot_sequence(folder)
    info.write_text(info.read_text().replace("seqLength=3", "seqLength=2").replace("frameRate=25", "frameRate=x"))
    with pytest.raises(FovealError, match="seqinfo.ini: framerate='x' is not a number"):
        read_mot_sequence(folder)


def test_a_video_with_its_ground_truth(tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for t in range(5):
        writer.write(np.full((48, 64, 3), 40 * t, np.uint8))
    writer.release()
    (tmp_path / "clip.txt").write_text("1,1,0,0,10,10,1,1,1\n5,1,2,2,10,10,1,2,1\n")
    sequence = read_video_sequence(video, names=["ball", "cup"])
    assert (sequence.name, sequence.fps, sequence.width, sequence.height) == ("clip", 10.0, 64, 48)
    assert len(sequence.frames) == 5 and sequence.frames[0].shape == (48, 64, 3)
    assert [len(t.ids) for t in sequence.gt] == [1, 0, 0, 0, 1] and sequence.gt[4].classes.tolist() == [1]
    assert sequence.classes == ["ball", "cup"]
    (tmp_path / "clip.txt").unlink()
    assert read_video_sequence(video).gt is None
