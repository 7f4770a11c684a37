"""BoT-SORT (Aharon et al. 2022) without re-identification: ByteTrack with the camera's motion taken out."""

from .bytetrack import ByteTrack


class BotSort(ByteTrack):
    """ByteTrack's three rounds of matching, with BoT-SORT's two changes to its motion model:

    - the Kalman state holds the box's width and height (cx, cy, w, h), each with its own noise, rather than
      its aspect ratio and height, so that the box's width follows the object more closely
    - camera-motion compensation (cmc "auto" = "sparse": optical flow on corners; or "ecc"; or "none"):
      every track's predicted box is moved by the camera's motion between frames before matching, so that a
      panning or shaking camera does not throw the tracks off their objects

    No re-identification: BoT-SORT's appearance features (a second network run on every box) are left out,
    so tracks are matched by motion and IoU alone.
    """

    form = "xywh"
    auto_cmc = "sparse"
