"""Pose models: yolo_*-pose (one stage), Keypoint R-CNN (two stages), hourglass (heatmaps)."""
