"""`foveal basics OP key=value`: the first lectures of a CNN course, on a small matrix or an image.

Convolution and pooling run through torch.nn.functional, the code a CNN layer runs, in float64 for
matrices so that printed results are exact. Inline matrices: rows by `;`, values by `,` or spaces;
the channels of a volume by `|`; several filters by `/`, each with one matrix per input channel (CS231n's
5x5x3 input and 3x3x3 filters). A single 2-D kernel on several channels (a colour image, or a `|` volume)
filters each channel on its own, as image filters do; any other channel mismatch is an error.

The later lectures' ops (neuron, backprop, minibatch, iou, nms, ap, yolo-output) compute with torch
autograd, foveal.ops.boxes and foveal.metrics.ranking, and print the arithmetic with the numbers.

ops.py holds the pure functions (the Python API, re-exported here), learning.py and detection.py those of
the later ops, printing.py what is printed, images.py the one image read and the PNGs written, commands.py
the op table as `foveal basics` runs it, lessons.py the later ops' commands.
"""

from .commands import basics  # noqa: F401  (the Python API: these names; no module here imports the package)
from .detection import nms_steps, parse_box, parse_scored_boxes, yolo_layouts  # noqa: F401
from .learning import backprop, neuron, updates_per_epoch  # noqa: F401
from .ops import (conv, fitting_paddings, formula, grayscale, histogram, kernel_weights, named_kernel,  # noqa: F401
                  negative, output_size, parse_filters, parse_matrix, parse_volume, pool, shape_text, threshold)
