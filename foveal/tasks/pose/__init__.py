"""Pose: keypoints and skeletons (task, predict, report)."""
