"""lfwbench: Siamese face verification on Labeled Faces in the Wild.

The TensorFlow-free API lives here (pair lists, images, metrics, results, reports); the Keras parts are in
`lfwbench.model`, `lfwbench.checkpoints`, `lfwbench.training` and `lfwbench.inference`.
"""

from __future__ import annotations

__version__ = "0.1.0"
