"""What a model that is not lfwbench's is fed, stated and recorded (no TensorFlow here).

lfwbench's own checkpoints carry their preprocessing in a stamp and scale pixels themselves. Any other model gets
exactly what the command line says: the image decoded as an `ImageSpec` (side, channels, centre crop of the 250 x
250 LFW image), in RGB or BGR order, scaled as `(pixel - mean) / std` per channel (in 0-255 units), laid out NHWC
or NCHW as the model's input asks. A wrong normalisation is the usual cause of a wrong LFW figure, so the report
always shows what the model was fed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lfwbench.errors import LfwbenchError
from lfwbench.images import ImageSpec

# name -> (mean, std) in 0-255 units: x / 255, x / 127.5 - 1, x as it is, ImageNet's per-channel statistics
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "0-1": ((0.0,), (255.0,)),
    "-1-1": ((127.5,), (127.5,)),
    "0-255": ((0.0,), (1.0,)),
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}
DEFAULT_NORMALIZATION = "0-1"
CHANNEL_ORDERS = ("rgb", "bgr")
LAYOUTS = ("NHWC", "NCHW")


@dataclass(frozen=True)
class Preprocessing:
    """How images become a model's input: `spec` to decode, then channel `order`, `(x - mean) / std`, `layout`."""

    spec: ImageSpec
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalization: str  # a NORMALIZATIONS name, or "custom" for --mean/--std
    order: str = "rgb"
    layout: str = "NHWC"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W, C) as the model's float32 input."""
        images = batch[..., ::-1] if self.order == "bgr" and batch.shape[-1] == 3 else batch
        scaled = (images.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2) if self.layout == "NCHW" else scaled)

    def describe(self) -> str:
        """`112x112 RGB, centre crop 150 of the 250x250 image, (x - 127.5) / 127.5 (-1-1), NCHW`."""
        spec = (
            self.spec.describe().replace("RGB", self.order.upper()) if self.spec.channels == 3 else self.spec.describe()
        )
        mean, std = (", ".join(f"{v:g}" for v in values) for values in (self.mean, self.std))
        mean, std = (f"[{v}]" if "," in v else v for v in (mean, std))
        return f"{spec}, (x - {mean}) / {std} ({self.normalization}), {self.layout}"


def preprocessing(
    spec: ImageSpec,
    normalization: str | None = None,
    mean: tuple[float, ...] = (),
    std: tuple[float, ...] = (),
    order: str = "rgb",
    layout: str = "NHWC",
) -> Preprocessing:
    """The Preprocessing the options name: `--normalize NAME`, or `--mean`/`--std` (one value or one per channel)."""
    if (mean or std) and normalization:
        raise LfwbenchError("give --normalize or --mean/--std, not both")
    if mean or std:
        if not mean or not std:
            raise LfwbenchError("--mean and --std go together")
        name = "custom"
    else:
        name = normalization or DEFAULT_NORMALIZATION
        if name not in NORMALIZATIONS:
            raise LfwbenchError(f"unknown normalisation {name!r}; one of {', '.join(NORMALIZATIONS)}")
        mean, std = NORMALIZATIONS[name]
    for label, values in (("--mean", mean), ("--std", std)):
        if len(values) not in (1, spec.channels):
            raise LfwbenchError(f"{label}: one value or one per channel ({spec.channels}), got {len(values)}")
    if any(value == 0 for value in std):
        raise LfwbenchError("--std: a zero would divide by zero")
    if name == "imagenet" and spec.channels != 3:
        raise LfwbenchError("--normalize imagenet needs 3 channels")
    return Preprocessing(spec, tuple(mean), tuple(std), name, order, layout)
