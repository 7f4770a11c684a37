"""Pose on images, folders, globs, video files and cameras: BoxPredictor's boxes plus each object's joints,
drawn as skeletons (left joints and limbs in one colour, right in another), in predictions.json as COCO
keypoint results ([x, y, score] per joint) and with save_txt as YOLO-pose lines."""

import numpy as np

from ...data.detection import KeypointLayout
from ...data.keypoints import joint_sides
from ...ops.keypoints import unletterbox_keypoints
from ...report.draw import draw_skeletons
from ..box_predict import BoxPredictor, yolo_lines


class PosePredictor(BoxPredictor):
    times_nms_apart = False  # yolo-pose's forward gathers each kept row's joints

    def __init__(self, task, model, device):
        super().__init__(task, model, device)
        self.layout = KeypointLayout.from_dict(self.meta["keypoints"])
        self.sides = joint_sides(self.layout.names)

    def objects(self, out, scale, pad, height, width):
        det = super().objects(out, scale, pad, height, width)
        det["keypoints"] = unletterbox_keypoints(out["keypoints"], scale, pad, height, width).cpu().numpy()
        return det

    def entry(self, det, k):
        return {"keypoints": [round(float(v), 2) for v in np.asarray(det["keypoints"][k]).reshape(-1)]}

    def label_lines(self, det, height, width):
        return yolo_lines(det, height, width, self.cfg.save_conf, self.cfg.kpt_conf)

    def draw(self, frame, det):
        return draw_skeletons(super().draw(frame, det), det["keypoints"], self.layout.skeleton, self.sides,
                              self.cfg.kpt_conf, self.cfg.line_width)

    def fields(self, frame, det):
        return {**super().fields(frame, det), "keypoints": det["keypoints"]}
