"""ONNX export of trained weights of any task (onnx_runtime.py runs the file in the model's place).

Export traces the eval model (BatchNorms folded where the task folds them) with torch.onnx.export, the
torch.export-based exporter, at opset 20 (its default; onnxruntime runs it), at a fixed (1, 3, imgsz,
imgsz) input or, with dynamic=true, any batch and any size in multiples of 32. A model whose eval output
is not plain tensors says what to export with `export_module()`. foveal's weights metadata goes into the
file's metadata_props["foveal"], so an .onnx file is as self-describing as a .safetensors one.

NMS in the graph (nms=true, for models with `exports_nms`: foveal's YOLO): the traced part ends with
the inputs of ONNX NonMaxSuppression (export_module(nms=True)), and append_nms writes the rest with
onnx.helper: NonMaxSuppression per class, then the best max_det detections of each image as one
(B, max_det, 6) output, rows x1, y1, x2, y2, score, class in input pixels, best first, zero rows after
the last (Ultralytics' end-to-end layout). Written by hand because the exporter cannot trace an output
whose length depends on the data. conf, iou and max_det are the model's when exported (conf 0.001,
val's, unless set) and are stored in the metadata. The NMS's score threshold is also an input, nms_conf,
with that conf as its default: foveal feeds the run's own conf (onnx_runtime.ConfFed), so predict's 0.25
selects among its own candidates; a conf below the export's or another iou cannot be had from the file
(the traced part already dropped the pairs under the export's conf).
nms=false, or another model: the graph ends where PyTorch's post-processing starts (YOLO: decoded boxes
and class scores), and foveal's own NMS runs after it, the same code as PyTorch's.

Instance segmenters (yolo_*-seg): the graph has two more outputs, each anchor's k mask coefficients
(B, A, k) and the prototypes (B, k, H/4, W/4). With NMS inside, append_nms gathers the coefficients with
the indices NonMaxSuppression selects, as it gathers the boxes: `detections` (B, max_det, 6 + k), each
row x1, y1, x2, y2, score, class, then its k coefficients, and `prototypes` (B, k, H/4, W/4) passed
through; with nms=false, boxes, scores, coefficients and prototypes. The masks are assembled after the
graph (coefficients . prototypes, upsampled to the input, sigmoid, zero outside the box) by the function
the PyTorch model calls (yolo_seg.assemble_masks), so a run of the file gives the model's eval output
{boxes, scores, labels, masks}: assembled in the graph, the masks would be (B, max_det, H, W) floats
at a size fixed when the file is written, 300 full-size masks to copy out for the few objects found.

Pose models (yolo_*-pose): one more output, each anchor's keypoints as eval returns them (B, A, 3K): x, y
input pixels and visibility probability per joint. With NMS inside they join the rows as the coefficients
do, `detections` (B, max_det, 6 + 3K); without, boxes, scores and keypoints.

half=true writes an fp16 graph (traced on a CUDA device, where fp16 is fast; NMS still in float32);
simplify=true passes the graph through onnxslim. int8 (calibration images given): onnxruntime's static
quantization of the network's layers (quantize_int8).
"""

import ast
import copy
import json
import logging
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..errors import FovealError
from ..files import write_bytes
from .onnx_runtime import CONF_INPUT, META_KEY, missing_runtime

STRIDE = 32  # dynamic sizes are multiples of it (every model here downsamples by at most 32)


def export_onnx(model: nn.Module, meta: dict, path: Path, imgsz: int, dynamic: bool, *, nms: bool = True,
                half: bool = False, simplify: bool = False, calibration: torch.Tensor | None = None,
                series_shape: tuple | None = None) -> Path:
    """Write `model` (eval mode, on the CPU, or on CUDA for half) as ONNX to `path` with `meta` in its
    metadata; returns path. nms: NMS inside the graph where the model can have it (see the module docstring).
    calibration: (N, 3, H, W) inputs as the model receives them; given, the graph is quantized to int8.
    series_shape: (1, window, columns) of a model that reads series, not images (dynamic: any batch)."""
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        raise missing_runtime("export format=onnx") from None
    device = next(model.parameters()).device
    if dynamic and (reason := getattr(model, "fixed_size_export", None)):  # before minutes in the exporter
        raise FovealError(f"dynamic: {meta['model']} exports at a fixed size only ({reason}); leave out dynamic=true")
    if half and device.type != "cuda":
        raise FovealError("half: an fp16 graph is exported on a GPU only; add device=cuda (or leave out half=true)")
    slim = simplifier() if simplify else None  # a missing package is named before the exporter's minutes
    wrapped = hasattr(model, "export_module")
    nms = nms and getattr(model, "exports_nms", False)
    if nms:
        module = model.export_module(nms=True)
    else:
        module = model.export_module() if wrapped else model
    module = module.eval()
    if half:
        module = copy.deepcopy(module).half()  # the caller's model stays as it is
    # dynamic: a size of one is specialised by torch.export, so the example has 2 images and 2+ strides a side
    side = max(imgsz, 2 * STRIDE) if dynamic else imgsz
    channels = meta.get("channels", 3)  # restore's grey models take one
    shape = (*series_shape[1:],) if series_shape else (channels, side, side)
    example = torch.rand(2 if dynamic else 1, *shape, device=device, dtype=torch.half if half else torch.float)
    shapes = None
    if dynamic:
        rows, cols = torch.export.Dim("rows", max=256), torch.export.Dim("cols", max=256)  # in strides
        sizes = {} if series_shape else {2: STRIDE * rows, 3: STRIDE * cols}
        shapes = ({0: torch.export.Dim("batch", max=1024), **sizes},)  # by position: forward's name for it varies
    if not series_shape:
        example = example.contiguous(memory_format=torch.channels_last)
    try:
        program = torch.onnx.export(module, (example,),
                                    dynamo=True, external_data=False, dynamic_shapes=shapes, verbose=False,
                                    input_names=["images"])
    except Exception as e:  # the exporter wraps the cause (an operator, a guard): its first line says it
        lines = str(e.__cause__ or e).strip().splitlines() or [type(e).__name__]
        raise FovealError(f"export: {meta['model']} cannot be exported to ONNX ({lines[0][:300]})") from None
    proto = program.model_proto
    free = ("batch",) if series_shape else ("batch", "", "height", "width")  # a series' window stays fixed
    fixed = [name for name, dim in zip(free, proto.graph.input[0].type.tensor_type.shape.dim)
             if name and dim.HasField("dim_value")]
    if dynamic and fixed:  # the exporter fixes a dimension it cannot keep free, silently: say so instead
        raise FovealError(f"dynamic: {meta['model']} exports with a fixed {' and '.join(fixed)} only; "
                          "leave out dynamic=true")
    details = {"dynamic": dynamic, "wrapped": wrapped, "nms": nms, "half": half, "opset": opset_of(proto)}
    if slim:  # before the NMS is appended: onnxslim would fold its conf input into a constant
        proto = slim(proto)
    if nms:
        append_nms(proto, model.conf, model.iou, model.max_det)
        details.update(conf=model.conf, iou=model.iou, max_det=model.max_det)
    if calibration is not None:
        proto = quantize_int8(proto, calibration)
        details.update(int8=True, calibration_images=len(calibration))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps({**meta, "imgsz": imgsz, "onnx": details})
    write_bytes(path, proto.SerializeToString())
    return path


def simplifier():
    """onnxslim's slim(proto) -> proto, or a one-line error naming the package."""
    try:
        from onnxslim import slim
    except ImportError:
        raise FovealError("simplify: needs onnxslim: pip install onnxslim (or 'foveal[deploy]')") from None
    return slim


def quantize_int8(proto, calibration: torch.Tensor):
    """proto with the layers of the network in int8: onnxruntime's static quantization (QDQ, weights per
    output channel, activation ranges from the calibration images' min and max). Only nodes traced inside
    a submodule are quantized (convolutions, activations, linear layers); what the top-level forward adds
    (yolo's box decoding, the class scores' selection, NMS) stays float32: quantizing box arithmetic cost
    yolo_n a quarter of its mAP, the layers alone 0.002 (measured on polyps at 160 px)."""
    import onnx

    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise missing_runtime("int8=true") from None

    class Images(CalibrationDataReader):  # one image per call: a fixed-size graph takes batch 1
        def __init__(self):
            self.images = iter(calibration.split(1))

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {proto.graph.input[0].name: image.numpy()}

    layers = [node.name for node in proto.graph.node if len(name_scopes(node)) > 2]  # ['', module, op] and deeper
    with tempfile.TemporaryDirectory(prefix="foveal-int8-") as folder:
        path = Path(folder) / "int8.onnx"
        logging.disable(logging.WARNING)  # its advice to pre-process (shape inference) is for other exporters
        try:
            quantize_static(proto, path, Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=layers)
        finally:
            logging.disable(logging.NOTSET)
        return onnx.load(str(path))


def name_scopes(node) -> list[str]:
    """The module path the exporter recorded for a node: ['', 'backbone', 'backbone.stem', ..., op]; [] for
    nodes written by hand (append_nms)."""
    scopes = next((entry.value for entry in node.metadata_props if entry.key == "pkg.torch.onnx.name_scopes"), "[]")
    return ast.literal_eval(scopes)


def opset_of(proto) -> int:
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


def append_nms(proto, conf: float, iou: float, max_det: int) -> None:
    """Replace the graph's two outputs, boxes (B, A, 4) and scores (B, C, A) as yolo.nms_inputs gives them,
    with `detections` (B, max_det, 6): per-class NonMaxSuppression, then each image's max_det best rows.
    A segmenter's graph has two more, coefficients (B, A, k) and prototypes: each row then also holds its
    anchor's k coefficients, (B, max_det, 6 + k), and the prototypes follow as a second output. A pose
    model's has one more, keypoints (B, A, 3K): each row then also holds its anchor's, (B, max_det, 6 + 3K)."""
    from onnx import TensorProto, helper

    graph = proto.graph
    boxes, scores, *extras = (output.name for output in graph.output)
    columns, per_anchor, prototypes = 6, None, None
    if extras:  # a segmenter's coefficients or a pose model's keypoints: columns of every row
        per_anchor = extras[0]
        columns += graph.output[2].type.tensor_type.shape.dim[2].dim_value
    if len(extras) > 1:  # a segmenter's prototypes: passed through
        prototypes = extras[1]
        prototypes_output = copy.deepcopy(graph.output[3])
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    graph.initializer.extend([
        helper.make_tensor("nms_max_det", TensorProto.INT64, [], [max_det]),
        helper.make_tensor("nms_iou", TensorProto.FLOAT, [], [iou]),
        helper.make_tensor(CONF_INPUT, TensorProto.FLOAT, [], [conf]),
        helper.make_tensor("nms_top", TensorProto.INT64, [1], [max_det]),
        helper.make_tensor("nms_axis0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("nms_axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("nms_axis2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("nms_batch_and_box", TensorProto.INT64, [2], [0, 2]),
        helper.make_tensor("nms_column_pad", TensorProto.INT64, [4], [0, 0, 0, max_det]),
        helper.make_tensor("nms_row_pad", TensorProto.INT64, [4], [0, 0, max_det, 0]),
        helper.make_tensor("nms_first", TensorProto.INT64, [], [0]),
        helper.make_tensor("nms_one", TensorProto.INT64, [], [1]),
        helper.make_tensor("nms_none", TensorProto.FLOAT, [], [-1.0]),
        helper.make_tensor("nms_zero", TensorProto.FLOAT, [], [0.0]),
    ])
    node = helper.make_node
    graph.node.extend([
        # selected (K, 3): image, class, anchor of every detection of every image, K unknown until run
        node("NonMaxSuppression", [boxes, scores, "nms_max_det", "nms_iou", CONF_INPUT], ["nms_selected"]),
        node("GatherND", [scores, "nms_selected"], ["nms_scores"]),  # (K,)
        node("Gather", ["nms_selected", "nms_batch_and_box"], ["nms_image_anchor"], axis=1),  # (K, 2)
        node("GatherND", [boxes, "nms_image_anchor"], ["nms_boxes"]),  # (K, 4)
        node("Gather", ["nms_selected", "nms_first"], ["nms_image"], axis=1),  # (K,)
        node("Gather", ["nms_selected", "nms_one"], ["nms_class_int"], axis=1),
        node("Cast", ["nms_class_int"], ["nms_class"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["nms_scores", "nms_axis1"], ["nms_score_column"]),
        node("Unsqueeze", ["nms_class", "nms_axis1"], ["nms_class_column"]),
        node("Concat", ["nms_boxes", "nms_score_column", "nms_class_column"], ["nms_rows"], axis=1),  # (K, 6)
    ])
    rows = "nms_rows"
    if per_anchor:  # each row's mask coefficients or keypoints, taken from its anchor as its box is
        rows = "nms_rows_with_extras"
        graph.node.extend([
            node("GatherND", [per_anchor, "nms_image_anchor"], ["nms_extras"]),  # (K, k)
            node("Concat", ["nms_rows", "nms_extras"], [rows], axis=1),  # (K, 6 + k)
        ])
    graph.node.extend([
        # max_det zero rows after them: what an image with fewer detections is padded with
        node("Pad", [rows, "nms_row_pad"], ["nms_padded_rows"]),  # (K + max_det, columns)
        # table (B, K + max_det): row k's score in its own image's line, -1 elsewhere and in the padding
        node("Shape", [boxes], ["nms_boxes_shape"]),
        node("Gather", ["nms_boxes_shape", "nms_first"], ["nms_batch"]),
        node("Range", ["nms_first", "nms_batch", "nms_one"], ["nms_images"]),  # (B,)
        node("Unsqueeze", ["nms_images", "nms_axis1"], ["nms_image_column"]),  # (B, 1)
        node("Unsqueeze", ["nms_image", "nms_axis0"], ["nms_image_row"]),  # (1, K)
        node("Equal", ["nms_image_column", "nms_image_row"], ["nms_in_image"]),  # (B, K)
        node("Unsqueeze", ["nms_scores", "nms_axis0"], ["nms_score_row"]),
        node("Where", ["nms_in_image", "nms_score_row", "nms_none"], ["nms_table"]),
        node("Pad", ["nms_table", "nms_column_pad", "nms_none"], ["nms_padded_table"]),
        node("TopK", ["nms_padded_table", "nms_top"], ["nms_best", "nms_best_rows"], axis=1),  # (B, max_det)
        node("Gather", ["nms_padded_rows", "nms_best_rows"], ["nms_best_detections"], axis=0),  # (B, max_det, columns)
        # an image with fewer than max_det detections took -1 entries: other images' rows, or padding
        node("Greater", ["nms_best", "nms_none"], ["nms_found"]),
        node("Unsqueeze", ["nms_found", "nms_axis2"], ["nms_found_column"]),
        node("Where", ["nms_found_column", "nms_best_detections", "nms_zero"], ["detections"]),
    ])
    # the threshold is also an input, its initializer the default: a run at a higher conf (predict's 0.25)
    # feeds it, so that NMS selects among its candidates only, not among val's 0.001 ones
    graph.input.append(helper.make_tensor_value_info(CONF_INPUT, TensorProto.FLOAT, []))
    del graph.output[:]
    output = helper.make_tensor_value_info("detections", TensorProto.FLOAT, [None, max_det, columns])
    output.type.tensor_type.shape.dim[0].CopyFrom(batch_dim)
    graph.output.append(output)
    if prototypes:
        graph.node.append(node("Identity", [prototypes], ["prototypes"]))
        prototypes_output.name = "prototypes"
        graph.output.append(prototypes_output)
