"""Exercises on visualizing networks (notebook 09): saliency, CAM, Grad-CAM and attention
rollout. The models are tiny and random (seeded), given in training mode with BatchNorm, so a
function that forgets ``model.eval()`` is caught."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cvlib.exercises.core import Case, Exercise, noncontiguous
from cvlib.explain import attention_rollout, cam, grad_cam, saliency


class TinyCNN(nn.Module):
    """``features``: conv 3->4, BatchNorm, ReLU, conv 4->5 (stride 2), ReLU; global average
    pooling; ``fc``: 5 -> 3 classes. Random weights from ``seed``, float64, training mode."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 5, 3, padding=1, stride=2), nn.ReLU(),
        )
        self.fc = nn.Linear(5, 3)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.7)
            bn = self.features[1]
            bn.running_mean.copy_(torch.randn(4, generator=generator) * 0.3)
            bn.running_var.copy_(0.5 + torch.rand(4, generator=generator))
        self.double().train()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images).mean(dim=(2, 3)))

    def __repr__(self) -> str:
        return (f"TinyCNN(seed={self.seed}): features = conv 3->4, BatchNorm, ReLU, conv 4->5 stride 2, "
                f"ReLU; global average pooling; fc 5->3 ({'training' if self.training else 'eval'} mode)")


def _targets(logits, target):
    if target is None:
        return logits.argmax(dim=1)
    return torch.as_tensor(target).long().reshape(-1).expand(len(logits))


def _input_gradient(model, images, target, *, eval_mode=True, probability=False, predicted=True):
    if eval_mode:
        model.eval()
    images = images.clone().requires_grad_(True)
    logits = model(images)
    target = _targets(logits, target) if predicted or target is not None else torch.zeros(len(logits)).long()
    scores = logits.softmax(dim=1) if probability else logits
    (grad,) = torch.autograd.grad(scores.gather(1, target[:, None]).sum(), images)
    return grad


def _saliency_variant(model, images, target=None, *, signed=False, reduce="max", **knobs):
    grad = _input_gradient(model, images, target, **knobs)
    grad = grad if signed else grad.abs()
    return grad.amax(dim=1) if reduce == "max" else grad.sum(dim=1)


def _activations(model, images, layer_name):
    store = {}
    handle = model.get_submodule(layer_name).register_forward_hook(lambda m, i, out: store.update(out=out))
    try:
        logits = model(images)
    finally:
        handle.remove()
    return logits, store["out"]


def _resize(maps, images, upsample, mode="bilinear"):
    if not upsample:
        return maps
    options = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(maps[:, None], size=images.shape[-2:], mode=mode, **options)[:, 0]


def _cam_variant(model, images, target=None, features="features", fc="fc", upsample=True, *, relu=False,
                 divide=False, use_target=True, eval_mode=True, mode="bilinear"):
    if eval_mode:
        model.eval()
    with torch.no_grad():
        logits, activations = _activations(model, images, features)
        weights = model.get_submodule(fc).weight[_targets(logits, target if use_target else None)]
        maps = torch.einsum("bk,bkhw->bhw", weights, activations)
    maps = maps / activations[0, 0].numel() if divide else maps
    return _resize(maps.relu() if relu else maps, images, upsample, mode)


def _grad_cam_variant(model, images, target=None, layer="features", upsample=True, *, relu=True,
                      average=True, positive_gradients=False, probability=False, eval_mode=True):
    if eval_mode:
        model.eval()
    logits, activations = _activations(model, images, layer)
    scores = logits.softmax(dim=1) if probability else logits
    (grads,) = torch.autograd.grad(scores.gather(1, _targets(logits, target)[:, None]).sum(), activations)
    grads = grads.relu() if positive_gradients else grads
    alpha = grads.mean(dim=(2, 3)) if average else grads.sum(dim=(2, 3))
    maps = torch.einsum("bk,bkhw->bhw", alpha, activations.detach())
    return _resize(maps.relu() if relu else maps, images, upsample).detach()


def _image_cases(extra_kwargs: dict) -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    images = lambda b, h, w: torch.rand(b, 3, h, w, generator=generator, dtype=torch.float64)
    return [
        Case((TinyCNN(0), images(1, 7, 7)), note="one image, the predicted class"),
        Case((TinyCNN(1), images(1, 6, 8)), {"target": 2}, note="target class 2"),
        Case((TinyCNN(2), images(2, 7, 7)), {"target": torch.tensor([0, 2])}, note="a target per image"),
        Case((TinyCNN(3), images(3, 5, 6)), note="a batch of three, predicted classes"),
        Case((TinyCNN(4), images(1, 8, 8)), {"target": 1, **extra_kwargs},
             note=", ".join(["target 1", *(f"{k}={v}" for k, v in extra_kwargs.items())])),
        Case((TinyCNN(5), noncontiguous(images(2, 6, 6))), note="non-contiguous images"),
    ]


def _random_image_case(generator, i, extra_kwargs: dict) -> Case:
    images = torch.rand(1 + i % 3, 3, 5 + i % 4, 5 + (i // 2) % 4, generator=generator, dtype=torch.float64)
    kwargs = dict(extra_kwargs) if i % 4 == 3 else {}
    if i % 2:
        kwargs["target"] = int(torch.randint(3, (1,), generator=generator))
    return Case((TinyCNN(100 + i), images), kwargs)


EVAL_MISTAKE = ("the model is left in training mode: call model.eval() first (BatchNorm uses the batch's "
                "statistics)")


def saliency_exercise() -> Exercise:
    mistakes = {
        "saliency without the absolute value: M = max over the channels of |dS_c / dI|":
            partial(_saliency_variant, signed=True),
        "the colour channels are summed: saliency takes the max of |gradient| over them":
            partial(_saliency_variant, reduce="sum"),
        "the gradient of the softmax probability: saliency differentiates the class score (logit)":
            partial(_saliency_variant, probability=True),
        EVAL_MISTAKE: partial(_saliency_variant, eval_mode=False),
        "target=None explains class 0: it explains the predicted class (argmax of the logits)":
            partial(_saliency_variant, predicted=False),
    }
    return Exercise("saliency", saliency, lambda: _image_cases({}),
                    partial(_random_image_case, extra_kwargs={}), 30, mistakes)


def cam_exercise() -> Exercise:
    mistakes = {
        "CAM with a ReLU: the CAM is signed (the ReLU belongs to Grad-CAM)": partial(_cam_variant, relu=True),
        "the map is divided by the number of cells h * w: CAM is sum_k w_k^c A^k":
            partial(_cam_variant, divide=True),
        "the target class is ignored: the map uses the weights of the given class":
            partial(_cam_variant, use_target=False),
        EVAL_MISTAKE: partial(_cam_variant, eval_mode=False),
        "the map is upsampled with nearest: resize it bilinearly (align_corners=False)":
            partial(_cam_variant, mode="nearest"),
    }
    return Exercise("cam", cam, lambda: _image_cases({"upsample": False}),
                    partial(_random_image_case, extra_kwargs={"upsample": False}), 30, mistakes)


def grad_cam_exercise() -> Exercise:
    mistakes = {
        "Grad-CAM without the ReLU": partial(_grad_cam_variant, relu=False),
        "the gradients are summed over the cells: alpha_k is their average (global average pooling)":
            partial(_grad_cam_variant, average=False),
        "the gradient of the softmax probability: Grad-CAM differentiates the class score (logit)":
            partial(_grad_cam_variant, probability=True),
        "the ReLU is applied to the gradients: it is applied to the weighted sum of the maps":
            partial(_grad_cam_variant, positive_gradients=True, relu=False),
        EVAL_MISTAKE: partial(_grad_cam_variant, eval_mode=False),
    }
    return Exercise("grad_cam", grad_cam, lambda: _image_cases({"upsample": False}),
                    partial(_random_image_case, extra_kwargs={"upsample": False}), 30, mistakes)


# ---------------------------------------------------------------------------------------------
# Attention rollout


def _rollout_variant(attentions, residual=0.5, head_fusion="mean", *, identity=True, right=False,
                     renormalise=True, honour_fusion=True, swap=False):
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens, dtype=attentions[0].dtype)
    rollout = eye.expand(attentions[0].shape[0], tokens, tokens)
    for a in attentions:
        fused = a.amax(dim=1) if head_fusion == "max" and honour_fusion else a.mean(dim=1)
        keep = 1 - residual if swap else residual
        layer = keep * eye + (1 - keep) * fused if identity else fused
        if renormalise:
            layer = layer / layer.sum(dim=-1, keepdim=True)
        rollout = rollout @ layer if right else layer @ rollout
    return rollout


def _attentions(generator, layers, batch, heads, tokens, dtype=torch.float64):
    return [(torch.randn(batch, heads, tokens, tokens, generator=generator, dtype=dtype) * 2).softmax(-1)
            for _ in range(layers)]


def attention_rollout_exercise() -> Exercise:
    def edge_cases():
        generator = torch.Generator().manual_seed(0)
        two = _attentions(generator, 2, 1, 2, 3)
        return [
            Case((_attentions(generator, 1, 1, 1, 2),), note="one layer, one head, two tokens"),
            Case((two,), note="two layers, two heads"),
            Case((two, 0.3), note="residual 0.3"),
            Case((two, 0.5, "max"), note="heads fused by max"),
            Case((two, 0.0), note="residual 0 (the attentions alone)"),
            Case(([noncontiguous(a.float()) for a in _attentions(generator, 3, 2, 2, 4)],),
                 note="float32, non-contiguous, three layers"),
        ]

    def random_case(generator, i):
        attentions = _attentions(generator, 1 + i % 4, 1 + i % 2, 1 + i % 3, 2 + i % 4)
        residual = (0.5, 0.3, 0.8, 0.5)[i % 4]
        return Case((attentions, residual, ("mean", "max")[(i // 4) % 2]))

    mistakes = {
        "the residual identity is missing: each layer is residual * I + (1 - residual) * A":
            partial(_rollout_variant, identity=False),
        "the layers are multiplied in the wrong order: each new layer goes on the left, R = A_l R":
            partial(_rollout_variant, right=True),
        "the rows are not renormalised after fusing the heads and adding the identity":
            partial(_rollout_variant, renormalise=False),
        "head_fusion is ignored (the heads are always averaged)":
            partial(_rollout_variant, honour_fusion=False),
        "residual and attention weights swapped: residual * I + (1 - residual) * A":
            partial(_rollout_variant, swap=True),
    }
    return Exercise("attention_rollout", attention_rollout, edge_cases, random_case, 80, mistakes)


EXERCISES = (
    saliency_exercise, cam_exercise, grad_cam_exercise, attention_rollout_exercise,
)
