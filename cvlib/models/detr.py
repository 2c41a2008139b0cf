"""DETR (lecture 07): object detection as direct **set prediction** with a transformer.

Read top to bottom, this file is the lecture's story:

1. **Positional encoding** (``sine_position_encoding``): attention is blind to order, so every
   feature-map cell gets a 2-D sine code of its (row, column), added to queries and keys.
2. **Transformer** (``EncoderLayer``, ``DecoderLayer``): the encoder lets the ``H/8 x W/8``
   cells of the CNN feature map attend to each other; the decoder turns ``N`` learned **object
   queries** into ``N`` object slots by self-attention (slots talk to each other, which is how
   they avoid predicting the same object twice) and cross-attention to the image.
3. **Bipartite matching** (``HungarianMatcher``): the ``N`` predictions and ``M <= N`` objects
   are paired one to one by the Hungarian algorithm on the cost
   ``-p(class) + 5 L1 - 2 GIoU`` (``scipy.optimize.linear_sum_assignment``).
4. **Set loss** (``SetCriterion``): cross-entropy on every slot (matched slots learn their
   object's class, the others "no object", down-weighted 10x) + L1 + generalized IoU on the
   matched boxes; the same loss on every decoder layer's output (auxiliary losses). Because
   every object has exactly one slot to go to, duplicates are penalised: no NMS is needed.
5. **Heads** (``DETR``): each slot predicts a class among ``C + 1`` (0 = "no object") and a box
   ``(cx, cy, w, h)`` in ``[0, 1]`` (a sigmoid), relative to the image size. No anchors.

``DETR`` follows torchvision's detection contract: ``model(images, targets)`` returns a dict of
losses in training mode; ``model(images)`` returns one ``{"boxes", "labels", "scores"}`` dict
per image in eval mode (boxes float xyxy pixels, labels ``1..C``). ``model.predict_sets(images)``
gives the raw set of every query, with the decoder's cross-attention maps;
``model.encoder_attention(images)`` the encoder's self-attention map of every feature cell.
The transformer uses ``torch.nn.MultiheadAttention``; attention is written out by hand in
``cvlib.models.vit``.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from cvlib._checks import counts, number, tensor
from cvlib.models.detection import Backbone, batch_images, check_detection_inputs
from cvlib.ops import box_convert, clip_boxes_to_image, generalized_box_iou

__all__ = [
    "sine_position_encoding",
    "EncoderLayer",
    "DecoderLayer",
    "MLP",
    "hungarian_assignment",
    "brute_force_assignment",
    "HungarianMatcher",
    "SetCriterion",
    "DETR",
]


# ---------------------------------------------------------------------------------------------
# 1. Positional encoding


def sine_position_encoding(height: int, width: int, d_model: int, temperature: float = 1e4) -> torch.Tensor:
    """DETR's 2-D sine positional encoding ``[height * width, d_model]`` (cells row by row).

    The first ``d_model / 2`` channels encode the row ``y``, the others the column ``x``: for
    ``n = d_model / 4`` frequencies ``f_i = temperature^(-i / n)``, a coordinate ``u`` (scaled to
    ``(0, 2 pi]``) gives ``[sin(u f_0), ..., sin(u f_{n-1}), cos(u f_0), ..., cos(u f_{n-1})]``.
    """
    counts(height=height, width=width, d_model=d_model)
    number(temperature, "temperature", low=0, low_open=True)
    if d_model % 4:
        raise ValueError(f"d_model must be a positive multiple of 4, got {d_model}")
    n = d_model // 4
    frequencies = temperature ** (-torch.arange(n, dtype=torch.float32) / n)

    def encode(length: int) -> torch.Tensor:  # [length, d_model / 2]
        u = torch.arange(1, length + 1, dtype=torch.float32) / length * 2 * math.pi
        angles = u[:, None] * frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    y = encode(height)[:, None, :].expand(height, width, 2 * n)
    x = encode(width)[None, :, :].expand(height, width, 2 * n)
    return torch.cat([y, x], dim=-1).reshape(height * width, d_model)


# ---------------------------------------------------------------------------------------------
# 2. The transformer: encoder and decoder layers (post-norm, as in DETR)


def _feed_forward(d_model: int, dim_feedforward: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(dim_feedforward, d_model))


class EncoderLayer(nn.Module):
    """Self-attention over the image cells, then a feed-forward network, each followed by a
    residual connection and LayerNorm. The positional encoding is added to queries and keys
    (not values) in every layer. ``x``, ``pos``: ``[B, S, d_model]``; ``padding`` bool
    ``[B, S]`` (True = a padded cell, ignored) or None. ``need_weights=True`` also returns the
    self-attention weights ``[B, S, S]`` (averaged over heads; row ``i``: where cell ``i`` looks)."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float = 0.0):
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.ffn = _feed_forward(d_model, dim_feedforward, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, pos, padding=None, need_weights: bool = False):
        q = k = x + pos
        attended, weights = self.attention(q, k, x, key_padding_mask=padding, need_weights=need_weights)
        x = self.norm1(x + self.dropout(attended))
        x = self.norm2(x + self.dropout(self.ffn(x)))
        return (x, weights) if need_weights else x


class DecoderLayer(nn.Module):
    """Self-attention among the ``N`` object slots, cross-attention from the slots to the
    encoded image (``memory``), then a feed-forward network; residuals and LayerNorms as in the
    encoder. ``x``, ``query_pos``: ``[B, N, d_model]``; ``memory``, ``pos``: ``[B, S, d_model]``.
    Returns the new slots ``[B, N, d_model]`` and the cross-attention weights ``[B, N, S]``
    (averaged over heads): where each slot looks in the image."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float = 0.0):
        super().__init__()
        self.self_attention = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.cross_attention = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.ffn = _feed_forward(d_model, dim_feedforward, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, query_pos, memory, pos, padding=None):
        q = k = x + query_pos
        x = self.norm1(x + self.dropout(self.self_attention(q, k, x, need_weights=False)[0]))
        attended, weights = self.cross_attention(x + query_pos, memory + pos, memory,
                                                 key_padding_mask=padding)
        x = self.norm2(x + self.dropout(attended))
        return self.norm3(x + self.dropout(self.ffn(x))), weights


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (DETR's box head)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, num_layers: int):
        super().__init__()
        sizes = [in_features] + [hidden] * (num_layers - 1) + [out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


# ---------------------------------------------------------------------------------------------
# 3. Bipartite matching


def _check_cost(cost) -> None:
    tensor(cost, "cost", shape=("N", "M"), dtype="float")
    if cost.shape[1] > cost.shape[0]:
        raise ValueError(f"cost must have N >= M (rows = predictions), got {tuple(cost.shape)}")
    if not torch.isfinite(cost).all():
        raise ValueError("cost must be finite (no NaN or inf)")


def hungarian_assignment(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-to-one assignment of minimum total cost for a cost matrix ``[N, M]``, ``N >= M``
    (rows = predictions, columns = objects): every column gets its own row. Returns int64
    ``rows`` ``[M]`` and ``cols`` ``[M]`` (sorted by row), solved in ``O(N^3)`` by the Hungarian
    algorithm (``scipy.optimize.linear_sum_assignment``)."""
    _check_cost(cost)
    rows, cols = linear_sum_assignment(cost.detach().cpu().double().numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


def brute_force_assignment(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same minimum-cost assignment as :func:`hungarian_assignment`, by trying every way of
    giving the ``M`` columns distinct rows: ``N! / (N - M)!`` candidates (tiny matrices only)."""
    _check_cost(cost)
    n, m = cost.shape
    if math.perm(n, m) > 1_000_000:
        raise ValueError(f"cost {tuple(cost.shape)} has too many assignments for brute force")
    columns = torch.arange(m)
    best = min(itertools.permutations(range(n), m), key=lambda rows: cost[list(rows), columns].sum().item())
    rows = torch.tensor(best, dtype=torch.int64).reshape(m)
    order = rows.argsort()
    return rows[order], columns[order]


def _giou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalized IoU ``[N, M]`` of normalised cxcywh boxes ``[N, 4]`` and ``[M, 4]``."""
    return generalized_box_iou(box_convert(boxes1, "cxcywh", "xyxy"), box_convert(boxes2, "cxcywh", "xyxy"))


class HungarianMatcher(nn.Module):
    """Pairs each image's predicted set with its objects, one to one, at minimum cost

    ``cost[i, j] = -w_class p_i(c_j) + w_l1 |b_i - b_j|_1 - w_giou GIoU(b_i, b_j)``

    where ``p_i(c_j)`` is prediction ``i``'s probability of object ``j``'s class and boxes are
    normalised ``(cx, cy, w, h)``. No gradient flows through the matching.
    """

    def __init__(self, cost_class: float = 1.0, cost_l1: float = 5.0, cost_giou: float = 2.0):
        super().__init__()
        for name, value in (("cost_class", cost_class), ("cost_l1", cost_l1), ("cost_giou", cost_giou)):
            number(value, name, low=0)
        self.cost_class, self.cost_l1, self.cost_giou = cost_class, cost_l1, cost_giou

    @torch.no_grad()
    def cost_matrix(self, logits, boxes, target_labels, target_boxes) -> torch.Tensor:
        """The cost ``[N, M]`` of one image: ``logits`` ``[N, C + 1]``, ``boxes`` ``[N, 4]``,
        ``target_labels`` int64 ``[M]``, ``target_boxes`` ``[M, 4]`` (normalised cxcywh)."""
        probability = logits.softmax(-1)[:, target_labels]
        l1 = torch.cdist(boxes, target_boxes, p=1)
        giou = _giou(boxes, target_boxes)
        return -self.cost_class * probability + self.cost_l1 * l1 - self.cost_giou * giou

    @torch.no_grad()
    def forward(self, logits, boxes, targets) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``logits`` ``[B, N, C + 1]``, ``boxes`` ``[B, N, 4]`` and one target dict per image
        (``labels`` ``[M]``, ``boxes`` ``[M, 4]`` normalised cxcywh) -> per image the matched
        prediction indices and object indices, two int64 tensors ``[M]``."""
        return [
            hungarian_assignment(self.cost_matrix(lg, bx, t["labels"], t["boxes"]))
            for lg, bx, t in zip(logits, boxes, targets, strict=True)
        ]


# ---------------------------------------------------------------------------------------------
# 4. The set loss


class SetCriterion(nn.Module):
    """DETR's loss of a predicted set against the objects, after Hungarian matching:

    - ``loss_ce``: cross-entropy of every slot's class; a matched slot's target is its
      object's label, every other slot's is 0 ("no object"), weighted ``no_object_weight``
      (there are many more empty slots than objects);
    - ``loss_bbox``: L1 distance of the matched boxes (normalised cxcywh);
    - ``loss_giou``: ``1 - GIoU`` of the matched boxes;

    each multiplied by its weight, box terms divided by the number of objects in the batch.
    With auxiliary losses, every earlier decoder layer's output gets the same loss (its own
    matching), named ``loss_ce_0``, ``loss_bbox_0``, ... (layer 0 first).
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None,
                 no_object_weight: float = 0.1, weight_ce: float = 1.0, weight_l1: float = 5.0,
                 weight_giou: float = 2.0):
        super().__init__()
        counts(num_classes=num_classes)
        for name, value in (("no_object_weight", no_object_weight), ("weight_ce", weight_ce),
                            ("weight_l1", weight_l1), ("weight_giou", weight_giou)):
            number(value, name, low=0)
        self.matcher = matcher or HungarianMatcher()
        self.weights = {"loss_ce": weight_ce, "loss_bbox": weight_l1, "loss_giou": weight_giou}
        class_weights = torch.ones(num_classes + 1)
        class_weights[0] = no_object_weight
        self.register_buffer("class_weights", class_weights)

    def layer_losses(self, logits, boxes, targets) -> dict[str, torch.Tensor]:
        """The three weighted losses of one decoder layer's set: ``logits`` ``[B, N, C + 1]``,
        ``boxes`` ``[B, N, 4]``; targets as :class:`HungarianMatcher`'s."""
        matches = self.matcher(logits, boxes, targets)
        classes = torch.zeros(logits.shape[:2], dtype=torch.int64, device=logits.device)
        for b, (rows, cols) in enumerate(matches):
            classes[b, rows] = targets[b]["labels"][cols]
        predicted = torch.cat([boxes[b, rows] for b, (rows, _) in enumerate(matches)])
        wanted = torch.cat([t["boxes"][cols] for t, (_, cols) in zip(targets, matches)])
        num_objects = max(len(wanted), 1)
        losses = {
            "loss_ce": F.cross_entropy(logits.flatten(0, 1), classes.flatten(), weight=self.class_weights),
            "loss_bbox": F.l1_loss(predicted, wanted, reduction="sum") / num_objects,
            "loss_giou": (1 - _giou(predicted, wanted).diagonal()).sum() / num_objects,
        }
        return {name: self.weights[name] * value for name, value in losses.items()}

    def forward(self, outputs: dict, targets: list[dict], aux: bool = True) -> dict[str, torch.Tensor]:
        """``outputs["logits"]`` ``[L, B, N, C + 1]`` and ``outputs["boxes"]`` ``[L, B, N, 4]``
        (one set per decoder layer, the last one is the prediction)."""
        losses = self.layer_losses(outputs["logits"][-1], outputs["boxes"][-1], targets)
        if aux:
            for layer in range(len(outputs["logits"]) - 1):
                extra = self.layer_losses(outputs["logits"][layer], outputs["boxes"][layer], targets)
                losses.update({f"{name}_{layer}": value for name, value in extra.items()})
        return losses


# ---------------------------------------------------------------------------------------------
# 5. The model: backbone, transformer, object queries and heads, trained with 3 and 4


class DETR(nn.Module):
    """DEtection TRansformer: CNN backbone (stride 8) -> 1x1 projection to ``d_model`` ->
    transformer encoder over the ``H/8 * W/8`` cells (+ sine positions) -> decoder of
    ``num_queries`` learned object queries -> per query a class (``C + 1`` logits, 0 = no
    object) and a box (sigmoid cxcywh relative to the image).

    Training mode: ``model(images, targets)`` -> ``{"loss_ce", "loss_bbox", "loss_giou"}`` (+ the
    auxiliary ``*_0``, ``*_1``... of earlier decoder layers when ``aux_loss``). Eval mode:
    ``model(images)`` -> per image ``{"boxes" [D, 4], "labels" [D], "scores" [D]}``: every query
    whose best object class scores above ``score_thresh``, highest first; no NMS.
    ``backbone``: any module with an ``out_channels`` attribute (any stride, e.g.
    :func:`cvlib.models.backbones.torchvision_backbone`); by default ``Backbone(width)``.
    """

    def __init__(self, num_classes: int = 3, width: int = 16, d_model: int = 128, num_heads: int = 4,
                 num_encoder_layers: int = 3, num_decoder_layers: int = 3, dim_feedforward: int = 256,
                 num_queries: int = 10, dropout: float = 0.0, aux_loss: bool = True,
                 score_thresh: float = 0.05, criterion: SetCriterion | None = None,
                 backbone: nn.Module | None = None):
        super().__init__()
        counts(num_classes=num_classes, width=width, d_model=d_model, num_heads=num_heads,
               num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
               num_queries=num_queries)
        number(dropout, "dropout", low=0, high=1, high_open=True)
        number(score_thresh, "score_thresh", low=0, high=1)
        self.num_classes, self.aux_loss, self.score_thresh = num_classes, aux_loss, score_thresh
        self.backbone = backbone if backbone is not None else Backbone(width)
        self.input_proj = nn.Conv2d(self.backbone.out_channels, d_model, 1)
        self.encoder = nn.ModuleList(
            EncoderLayer(d_model, num_heads, dim_feedforward, dropout) for _ in range(num_encoder_layers))
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, num_heads, dim_feedforward, dropout) for _ in range(num_decoder_layers))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.class_head = nn.Linear(d_model, num_classes + 1)
        self.box_head = MLP(d_model, d_model, 4, 3)
        self.criterion = criterion or SetCriterion(num_classes)

    def predict_sets(self, images: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The raw predicted sets of a list of ``B`` images (``[3, H_i, W_i]``, padded together):

        - ``logits``: ``[L, B, N, C + 1]``, the class logits after each of the ``L`` decoder layers,
        - ``boxes``: ``[L, B, N, 4]``, normalised ``(cx, cy, w, h)`` in ``[0, 1]`` of each image,
        - ``attention``: ``[B, N, h, w]``, the last decoder layer's cross-attention of each query
          over the ``h x w`` feature-map cells (each map sums to 1).
        """
        memory, pos, padding, (h, w) = self._encode(images)
        b = len(memory)
        query_pos = self.query_embed.weight[None].expand(b, -1, -1)
        x, slots = torch.zeros_like(query_pos), []
        for layer in self.decoder:
            x, attention = layer(x, query_pos, memory, pos, padding)
            slots.append(self.decoder_norm(x))
        slots = torch.stack(slots)  # [L, B, N, d]
        return {"logits": self.class_head(slots), "boxes": self.box_head(slots).sigmoid(),
                "attention": attention.reshape(b, -1, h, w)}

    def _encode(self, images, attention: list | None = None):
        """Backbone, projection and encoder: the memory and positions ``[B, S, d]``, the padding
        mask and the feature size ``(h, w)``; appends each layer's self-attention to ``attention``."""
        batch = batch_images(images)
        features = self.input_proj(self.backbone(batch))  # [B, d, h, w]
        b, d, h, w = features.shape
        memory = features.flatten(2).transpose(1, 2)  # [B, S = h * w, d]
        pos = sine_position_encoding(h, w, d).to(memory)[None].expand(b, -1, -1)
        padding = self._padding(images, batch.shape[-2:], (h, w))
        for layer in self.encoder:
            if attention is None:
                memory = layer(memory, pos, padding)
            else:
                memory, weights = layer(memory, pos, padding, need_weights=True)
                attention.append(weights)
        return memory, pos, padding, (h, w)

    def encoder_attention(self, images: list[torch.Tensor]) -> torch.Tensor:
        """The encoder's self-attention ``[L, B, h, w, h, w]`` of a list of ``B`` images (padded
        together): ``[l, b, y, x]`` is the map over the ``h x w`` feature cells of what cell
        ``(y, x)`` attends to in encoder layer ``l`` (averaged over heads, sums to 1); the DETR
        paper's figure of encoder attention for a reference point."""
        check_detection_inputs(images, None, self.num_classes, False, self)
        attention = []
        _, _, _, (h, w) = self._encode(images, attention)
        return torch.stack(attention).reshape(len(attention), len(images), h, w, h, w)

    @staticmethod
    def _padding(images, padded_size, feature_size) -> torch.Tensor | None:
        """True for the feature cells that only see zero padding ``[B, h * w]``; None if none."""
        (height, width), (h, w) = padded_size, feature_size
        if all(tuple(i.shape[1:]) == (height, width) for i in images):
            return None
        rows = torch.arange(h, device=images[0].device)[:, None]
        cols = torch.arange(w, device=images[0].device)[None, :]
        return torch.stack([
            (rows >= math.ceil(i.shape[1] * h / height)) | (cols >= math.ceil(i.shape[2] * w / width))
            for i in images
        ]).flatten(1)

    @staticmethod
    def _scale(image) -> torch.Tensor:
        """``[w, h, w, h]`` of one ``[3, H, W]`` image, to turn normalised boxes into pixels."""
        height, width = image.shape[1:]
        return image.new_tensor([width, height, width, height])

    def normalise_targets(self, images, targets) -> list[dict]:
        """Targets with ``boxes`` as normalised cxcywh (``[0, 1]`` of each image), as the loss wants."""
        return [{"labels": t["labels"], "boxes": box_convert(t["boxes"], "xyxy", "cxcywh") / self._scale(i)}
                for i, t in zip(images, targets)]

    def postprocess(self, logits, boxes, images) -> list[dict]:
        """Detections of one decoder layer's sets (``logits`` ``[B, N, C + 1]``, ``boxes``
        ``[B, N, 4]``, normally the last layer's): each query's most likely object class and its
        probability, boxes in xyxy pixels clipped to the image; queries scoring <= ``score_thresh``
        are dropped."""
        scores, labels = logits.softmax(-1)[..., 1:].max(-1)
        detections = []
        for score, label, box, image in zip(scores, labels, boxes, images):
            xyxy = box_convert(box, "cxcywh", "xyxy") * self._scale(image)
            xyxy = clip_boxes_to_image(xyxy, image.shape[1:])
            keep = torch.nonzero(score > self.score_thresh).flatten()
            keep = keep[score[keep].argsort(descending=True)]
            detections.append({"boxes": xyxy[keep], "labels": label[keep] + 1, "scores": score[keep]})
        return detections

    def forward(self, images, targets=None):
        check_detection_inputs(images, targets, self.num_classes, self.training, self)
        outputs = self.predict_sets(images)
        if self.training:
            return self.criterion(outputs, self.normalise_targets(images, targets), aux=self.aux_loss)
        return self.postprocess(outputs["logits"][-1], outputs["boxes"][-1], images)
