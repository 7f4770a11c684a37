"""torchvision's Keypoint R-CNN behind foveal's pose contract: keypointrcnn_resnet50_fpn and the lighter
keypointrcnn_resnet18_fpn.

The detector contract of foveal/models/detect/torchvision_zoo.py (label 0 is torchvision's background,
the images keep foveal's letterboxed size, conf/iou/max_det go to the RoI heads) plus keypoints.
Training targets also carry "keypoints" (N, K, 3) x, y input pixels and visibility: torchvision learns
the joints with v > 0 (labelled, visible or not) and ignores the others. Eval results also carry
"keypoints" (M, K, 3): x, y input pixels and each joint's score in [0, 1].

The joint score: torchvision's head predicts, per joint, logits over a 56 x 56 grid on the box, trained
by cross-entropy against the one cell that holds the joint, and reports the logit at the peak. A
softmax over the grid is invariant to adding a constant to every logit, so the logit alone has no
scale; the softmax at the peak cell has one: the probability the head gives to the joint lying in that
cell. A joint the data never labels gets a spread-out map and a low score. That softmax maximum is the
score (the peak of the 56 x 56 map; torchvision's position comes from a bicubic upsampling of it).

Built with weights=None and weights_backbone=None: nothing is downloaded. pretrained= takes a local
file, torchvision's own keypointrcnn_resnet50_fpn .pth included (engine/transfer.py finds its keys
under the wrapper's `model.`); the keypoint predictor and box predictor are re-initialised when K or
the classes differ. Not exported to ONNX (two stages: see TorchvisionDetector.export_module).
"""

import torch
from torch import nn
from torchvision.models import detection
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor

from ...registry import register_model
from ..detect.torchvision_zoo import TorchvisionDetector, _size_kwargs

COCO_KEYPOINTS = 17


class TorchvisionKeypointDetector(TorchvisionDetector):
    """A TorchvisionDetector whose targets and results also carry keypoints."""

    export_instead = "for ONNX use yolo_n/s/m-pose or hourglass"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the trainer's channels_last weights give channels_last heatmap logits, which torchvision's keypoint
        # loss .view()s and so refuses; a hook (not a wrapper) keeps torchvision's state_dict keys
        self.model.roi_heads.keypoint_predictor.register_forward_hook(contiguous_output)

    def forward(self, images, targets=None):
        images = list(images.unbind(0))
        if self.training:  # labels move past the background label 0; extra keys (index, scale, pad) stay here
            return self.model(images, [{"boxes": t["boxes"], "labels": t["labels"] + self.offset,
                                        "keypoints": t["keypoints"]} for t in targets])
        self._thresholds()
        logits = []  # the keypoint heatmap logits of every kept box, all images together, in result order
        hook = self.model.roi_heads.keypoint_predictor.register_forward_hook(lambda m, i, out: logits.append(out))
        try:
            outputs = self.model(images)
        finally:
            hook.remove()
        scores = peak_probabilities(logits[0].float()).split([len(o["boxes"]) for o in outputs])
        return [self._result(output, score) for output, score in zip(outputs, scores)]

    def _result(self, output: dict, joint_scores: torch.Tensor) -> dict:
        keypoints = torch.cat([output["keypoints"][..., :2], joint_scores[..., None]], -1)  # v = 1 -> the score
        return {"boxes": output["boxes"], "scores": output["scores"], "labels": output["labels"] - self.offset,
                "keypoints": keypoints}


def contiguous_output(module, inputs, output):
    return output.contiguous()


def peak_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(R, K, h, w) heatmap logits -> (R, K) the softmax over each map at its peak."""
    return logits.flatten(2).softmax(-1).amax(-1) if logits.numel() else logits.new_zeros(logits.shape[:2])


def _keypointrcnn_resnet18(num_classes: int, num_keypoints: int, imgsz: int):
    # BatchNorm2d, not resnet_fpn_backbone's FrozenBatchNorm2d, which without trained statistics
    # normalises nothing (torchvision's builders switch too when no weights are loaded)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5)
    # torchvision's keypoint head is 8 convs of 512 channels on a 14 x 14 RoI: 3.7 GMACs for every
    # positive RoI (up to 128 an image in training). Four of 256, Mask R-CNN's mask head: 0.46 GMACs.
    # Fewer proposals and sampled RoIs than the defaults (sized for 800 px COCO images), as
    # maskrcnn_resnet18_fpn: 64 RoIs an image keep up to 16 positives for the keypoint head.
    return detection.KeypointRCNN(backbone, num_classes=num_classes, num_keypoints=None,
                                  keypoint_head=KeypointRCNNHeads(backbone.out_channels, (256,) * 4),
                                  keypoint_predictor=KeypointRCNNPredictor(256, num_keypoints),
                                  rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
                                  rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=250,
                                  box_batch_size_per_image=64, **_size_kwargs(imgsz))


def _keypointrcnn_resnet50(num_classes: int, num_keypoints: int, imgsz: int):
    return detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes,
                                               num_keypoints=num_keypoints, **_size_kwargs(imgsz))


def _register(name: str, build):
    def builder(num_classes: int, num_keypoints: int = COCO_KEYPOINTS, imgsz: int = 320, sigmas=None, **kwargs):
        """kwargs: conf, iou, max_det (see TorchvisionDetector). sigmas: the OKS sigmas the pose task gives
        every pose model; this one's loss (a heatmap cross-entropy) has no use for them, the metric has."""
        return TorchvisionKeypointDetector(build(num_classes + 1, num_keypoints, imgsz), background_label=True,
                                           name=name, **kwargs)

    register_model("pose", name, family="torchvision")(builder)


_register("keypointrcnn_resnet18_fpn", _keypointrcnn_resnet18)
_register("keypointrcnn_resnet50_fpn", _keypointrcnn_resnet50)
