"""Network dissection in brief (Bau et al. 2017): which units detect which concept?

For one unit (channel) ``k`` of a layer:

1. threshold its activation map at the level ``T_k`` that only the top ``1 - quantile`` of its
   activations over the whole data set exceed (Bau et al.: the top 0.5 %);
2. upsample the maps to the image and keep the region ``A_k > T_k``;
3. score it against each concept's masks ``M_c`` over the data set:
   ``IoU_kc = sum_n |R_nk and M_nc| / sum_n |R_nk or M_nc|`` (``M_nc`` is empty where image
   ``n`` does not show concept ``c``).

A unit "detects" the concept with its highest IoU, when that IoU is large enough (Bau et al.
counted IoU > 0.04 on broad real-image concepts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import integer, number, tensor
from cvlib.explain.features import layer_features

__all__ = ["unit_concept_iou"]


def unit_concept_iou(model: nn.Module, images: torch.Tensor, layer: nn.Module | str, masks: torch.Tensor,
                     labels: torch.Tensor, num_concepts: int, quantile: float = 0.99) -> torch.Tensor:
    """IoU ``[K, num_concepts]`` of each unit's top-activation region with each concept.

    ``images`` ``[N, 3, H, W]``; ``masks`` ``[N, H, W]`` (bool) the concept region of each image
    and ``labels`` ``[N]`` (int, ``0 .. num_concepts - 1``) its concept.
    """
    activations = layer_features(model, images, layer, pool=False)  # [N, K, h, w]
    n, _, height, width = images.shape
    tensor(masks, "masks", shape=(n, height, width), dtype="int_or_bool")
    tensor(labels, "labels", shape=(n,), dtype="int")
    integer(num_concepts, "num_concepts", low=1)
    number(quantile, "quantile", low=0, high=1, low_open=True, high_open=True)
    if activations.ndim != 4:
        raise ValueError(f"layer output must be [N, K, h, w], got {tuple(activations.shape)}")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < num_concepts):
        raise ValueError(f"labels must be in [0, {num_concepts}), got {labels.unique().tolist()}")
    thresholds = torch.quantile(activations.transpose(0, 1).flatten(1).float().cpu(), quantile, dim=1)
    up = F.interpolate(activations, size=(height, width), mode="bilinear", align_corners=False)
    regions = up > thresholds.to(up)[None, :, None, None]  # [N, K, H, W]
    concept = F.one_hot(labels.long(), num_concepts).bool()[:, :, None, None] & masks.bool()[:, None]
    regions, concept = regions.flatten(2).float(), concept.flatten(2).float()  # [N, K, P], [N, C, P]
    inter = torch.einsum("nkp,ncp->kc", regions, concept)
    union = regions.sum(dim=(0, 2))[:, None] + concept.sum(dim=(0, 2))[None, :] - inter
    return inter / union.clamp(min=1)
