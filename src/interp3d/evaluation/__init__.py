"""Evaluation protocol: 3D structure, pose and 2D keypoint metrics."""
