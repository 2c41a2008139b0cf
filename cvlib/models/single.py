"""Single-object detection = classification + localization (lecture 04).

A CNN sees the whole image; its final feature map is flattened (keeping *where* things are,
which global average pooling would throw away) and feeds two heads: class scores and four box
numbers. Training minimises the multitask loss ``CE + lambda * smooth L1`` of
``cvlib.losses.single_object_loss``.
"""

from __future__ import annotations

import torch
from torch import nn

from cvlib._checks import counts, integer, module, tensor
from cvlib._checks import images as check_images
from cvlib.losses import single_object_loss
from cvlib.models.blocks import vgg_features
from cvlib.ops.boxes import _check_boxes, box_convert, box_iou

__all__ = ["SingleObjectDetector", "box_params", "evaluate"]


def box_params(boxes: torch.Tensor, image_size: int) -> torch.Tensor:
    """xyxy pixel boxes ``[B, 4]`` -> the regression targets ``[B, 4]``: centre and size divided
    by the image size, ``(cx, cy, w, h)`` in ``[0, 1]``."""
    _check_boxes(boxes)
    return box_convert(boxes, "xyxy", "cxcywh") / integer(image_size, "image_size", low=1)


class SingleObjectDetector(nn.Module):
    """``[B, 3, S, S]`` -> ``{"logits": [B, C], "box_params": [B, 4], "boxes": [B, 4]}``.

    ``box_params`` are normalised ``(cx, cy, w, h)`` (a sigmoid keeps them in ``[0, 1]``);
    ``boxes`` are the same boxes as xyxy pixels.
    """

    def __init__(self, num_classes: int = 3, image_size: int = 64, width: int = 16, hidden: int = 128):
        """``width``: channels of the first conv layer (see ``vgg_features``); ``hidden``:
        size of the shared fully connected layer before the two heads."""
        super().__init__()
        counts(num_classes=num_classes, image_size=image_size, width=width, hidden=hidden)
        if image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 (3 stride-2 layers), got {image_size}")
        self.image_size = image_size
        self.features = vgg_features(width)
        cells = (image_size // 8) ** 2
        self.trunk = nn.Sequential(  # 1x1 conv to 16 channels first: a small flattened vector
            nn.Conv2d(8 * width, 16, 1), nn.ReLU(inplace=True), nn.Flatten(),
            nn.Linear(16 * cells, hidden), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(hidden, num_classes)
        self.box_head = nn.Linear(hidden, 4)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images, like=self, size=(self.image_size, self.image_size))
        h = self.trunk(self.features(images))
        params = torch.sigmoid(self.box_head(h))
        boxes = box_convert(params * self.image_size, "cxcywh", "xyxy")
        return {"logits": self.classifier(h), "box_params": params, "boxes": boxes}

    def loss(self, outputs: dict, targets: dict, box_weight: float = 1.0, box_loss: str = "smooth_l1"):
        """The multitask loss against ``targets`` from ``collate_single_object``:
        ``{"loss_cls", "loss_box"}`` (see :func:`cvlib.losses.single_object_loss`)."""
        wanted = {"labels": targets["labels"], "box_params": box_params(targets["boxes"], self.image_size)}
        return single_object_loss(outputs, wanted, box_weight, box_loss)


@torch.no_grad()
def evaluate(model: SingleObjectDetector, images: torch.Tensor, targets: dict, batch_size: int = 256) -> dict:
    """Accuracy, mean IoU of the predicted box with the true box, and the fraction of images
    whose class is right and box IoU >= 0.5 (a correct detection)."""
    check_images(images, like=module(model))
    integer(batch_size, "batch_size", low=1)
    if not isinstance(targets, dict) or not {"labels", "boxes"} <= set(targets):
        raise ValueError(f"targets must be a dict with 'labels' and 'boxes', got {type(targets).__name__}")
    tensor(targets["labels"], "targets['labels']", shape=(len(images),), dtype="int")
    _check_boxes(targets["boxes"], "targets['boxes']")
    model.eval()
    device = next(model.parameters()).device
    outputs = [model(chunk.to(device)) for chunk in images.split(batch_size)]
    labels = torch.cat([o["logits"].argmax(1).cpu() for o in outputs])
    boxes = torch.cat([o["boxes"].cpu() for o in outputs])
    iou = box_iou(boxes, targets["boxes"]).diagonal()
    correct = labels == targets["labels"]
    return {
        "accuracy": correct.float().mean().item(),
        "mean_iou": iou.mean().item(),
        "correct_detections": (correct & (iou >= 0.5)).float().mean().item(),
    }
