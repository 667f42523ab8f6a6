"""mp4 video of a camera's frames with PyAV, one frame every 1/fps s (pts = frame number), as
LeRobot stores cameras."""
from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import av
import numpy as np

# our name → (PyAV encoder, LeRobot's `video.codec` name)
CODECS = {"h264": ("libx264", "h264"), "av1": ("libsvtav1", "av1")}


class VideoWriter:
    """Frames appended episode after episode into one mp4 (RGB uint8, one size, even width and
    height for yuv420p). A short GOP keeps a reader's seek to any timestamp cheap (LeRobot
    encodes with g=2 too)."""

    def __init__(self, path: str, fps: float, codec: str, width: int, height: int,
                 gop: int = 2) -> None:
        self.container = av.open(path, "w")
        self.stream = self.container.add_stream(CODECS[codec][0],
                                                rate=Fraction(fps).limit_denominator(1000))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.options = {"g": str(gop)}
        self.frames = 0

    def add(self, frames: Sequence[np.ndarray]) -> None:
        for image in frames:
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                self.container.mux(packet)
        self.frames += len(frames)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def encode_video(path: str, frames: Sequence[np.ndarray], fps: float, codec: str = "h264") -> None:
    """Write one video of `frames`."""
    writer = VideoWriter(path, fps, codec, frames[0].shape[1], frames[0].shape[0])
    writer.add(frames)
    writer.close()
