"""Camera-motion compensation: how the whole picture moved from the previous frame to this one."""

import cv2
import numpy as np

from ..errors import FovealError

METHODS = ("none", "sparse", "ecc")
MAX_SIDE = 320  # frames are estimated at most this large: the camera's motion needs no fine detail
IDENTITY = np.eye(2, 3)


class CameraMotion:
    """`warp(frame)`: the 2x3 affine map from the previous frame's pixels to this frame's (the identity for
    the first frame, for method "none", and where the estimate fails).

    sparse  corners (goodFeaturesToTrack) followed by pyramidal Lucas-Kanade optical flow, then a rotation +
            scale + shift fitted to them with RANSAC, so that objects moving on their own are outliers
    ecc     the Euclidean (rotation + shift) map that best aligns the frames' intensities (findTransformECC)
    """

    def __init__(self, method: str = "sparse"):
        if method not in METHODS:
            raise FovealError(f"unknown cmc '{method}'; choose from {', '.join(METHODS)}")
        self.method = method
        self.reset()

    def reset(self) -> None:
        self.previous = None  # the previous frame, grey and downscaled
        self.corners = None  # its corners (sparse)

    def warp(self, frame: np.ndarray | None) -> np.ndarray:
        if self.method == "none" or frame is None:
            return IDENTITY.copy()
        scale = max(1.0, max(frame.shape[:2]) / MAX_SIDE)
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale > 1:
            size = (round(grey.shape[1] / scale), round(grey.shape[0] / scale))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        affine = IDENTITY.copy()
        if self.previous is not None and self.previous.shape == grey.shape:
            affine = self._sparse(grey) if self.method == "sparse" else self._ecc(grey)
        self.previous = grey
        if self.method == "sparse":
            # a low quality level (relative to the strongest corner): a few strong corners on a bright object would
            # otherwise leave the background, whose motion is the camera's, few ones
            self.corners = cv2.goodFeaturesToTrack(grey, maxCorners=300, qualityLevel=0.003, minDistance=5)
        affine[:, 2] *= scale  # the shift, measured on the small frame, in the frame's pixels
        return affine

    def _sparse(self, grey: np.ndarray) -> np.ndarray:
        if self.corners is None or len(self.corners) < 4:
            return IDENTITY.copy()
        moved, found, _ = cv2.calcOpticalFlowPyrLK(self.previous, grey, self.corners, None)
        found = found.ravel() == 1
        if found.sum() < 4:
            return IDENTITY.copy()
        affine, _ = cv2.estimateAffinePartial2D(self.corners[found], moved[found], method=cv2.RANSAC)
        return IDENTITY.copy() if affine is None else affine

    def _ecc(self, grey: np.ndarray) -> np.ndarray:
        """ECC from coarse to fine: ECC follows its gradient, and a shift of many pixels is a few at 1/4 size."""
        affine = IDENTITY.astype(np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
        for factor in (4, 2, 1):
            previous, current = (cv2.resize(image, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
                                 for image in (self.previous, grey))
            affine[:, 2] /= factor
            try:  # template = the previous frame: the map found takes its pixels to this frame's
                _, affine = cv2.findTransformECC(previous, current, affine, cv2.MOTION_EUCLIDEAN, criteria, None, 3)
            except cv2.error:  # did not converge: no motion is a safer guess than a wild one
                return IDENTITY.copy()
            affine[:, 2] *= factor
        return affine.astype(np.float64)
