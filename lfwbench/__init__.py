"""lfwbench: Siamese face verification on Labeled Faces in the Wild.

The TensorFlow-free API lives here (pair lists, images, metrics, results, reports); the Keras parts are in
`lfwbench.model`, `lfwbench.checkpoints`, `lfwbench.training` and `lfwbench.inference`.
"""

from __future__ import annotations

import os

# OpenCV reads its decoding limit once, when it is first imported: images.MAX_SIDE squared (4096 x 4096).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(4096 * 4096))

__version__ = "0.1.0"
