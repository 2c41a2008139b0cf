"""Argument checks shared by every public function of cvlib, so that bad input gives one kind of
error everywhere: a ``TypeError`` (not a tensor, not a number) or a ``ValueError`` (wrong shape,
dtype, value) whose message names the public argument, what was expected and what was received::

    boxes = tensor(boxes, "boxes", shape=("N", 4), dtype="float", finite=True)
    iou_threshold = number(iou_threshold, "iou_threshold", low=0)

Only what torch does not already say clearly is checked here (torch's own messages for, say,
a matrix product of mismatched sizes name no argument of ours, so those are checked too).
Each helper returns its value, so a contract reads as one line per argument.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

__all__ = [
    "describe", "tensor", "all_finite", "number", "integer", "choice", "sequence", "same_length", "images",
    "module", "pair", "labels", "counts",
]

DTYPES = {  # dtype kind -> (test, words for the message)
    "float": (lambda t: t.is_floating_point(), "floating point"),
    "int": (lambda t: not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool,
            "integer"),
    "bool": (lambda t: t.dtype == torch.bool, "bool"),
    "int_or_bool": (lambda t: not t.is_floating_point() and not t.is_complex(), "integer or bool"),
    "real": (lambda t: not t.is_complex() and t.dtype != torch.bool, "real (int or float)"),
}


def describe(value) -> str:
    """What ``value`` is, for an error message: a tensor's dtype and shape, else its type and a
    short repr."""
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _shape_text(shape: Sequence) -> str:
    return "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"


def _fixed(size) -> bool:
    """A size of a ``shape`` contract that must match (an int; a name or None is free)."""
    return isinstance(size, int)


def tensor(
    value,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | str | None] | None = None,
    dtype: str | None = None,
    finite: bool = False,
    nonempty: bool = False,
) -> torch.Tensor:
    """``value`` if it is a tensor meeting the contract, else a clear error.

    Args:
        ndim: the allowed number(s) of dimensions.
        shape: the shape; a name or ``None`` is a free size (``("N", 4)`` is ``[N, 4]``).
        dtype: ``"float"``, ``"int"``, ``"bool"``, ``"int_or_bool"`` or ``"real"``.
        finite: no NaN or inf (floating point tensors only).
        nonempty: at least one element.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(value)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            wanted = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {wanted} dimensions, got shape {tuple(value.shape)}")
    if shape is not None and (
        value.ndim != len(shape) or any(_fixed(s) and s != v for s, v in zip(shape, value.shape))
    ):
        raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {tuple(value.shape)}")
    if dtype is not None:
        test, words = DTYPES[dtype]
        if not test(value):
            raise ValueError(f"{name} must be a {words} tensor, got {value.dtype}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    if finite:
        all_finite(value, name)
    return value


def all_finite(value: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` unless a floating point ``value`` holds NaN or inf."""
    if value.is_floating_point() and not torch.isfinite(value).all():
        bad = "NaN" if torch.isnan(value).any() else "inf"
        raise ValueError(f"{name} contains {bad}; it must be finite")
    return value


def _range_text(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "finite"


def number(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` if it is a finite real number (not a bool, not a tensor) in the range
    ``low .. high`` (``low_open`` / ``high_open`` exclude the end), else a clear error."""
    what = f"a number {_range_text(low, high, low_open, high_open)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, got {describe(value)}")
    if (
        not math.isfinite(value)
        or (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high))
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def integer(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]``, else a clear error."""
    what = f"an int {_range_text(low, high, False, False)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {what}, got {describe(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def choice(value, name: str, options: Sequence):
    """``value`` if it is one of ``options``, else a ``ValueError`` listing them."""
    if not isinstance(value, (str, int, float, type(None))) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def sequence(value, name: str, *, nonempty: bool = False) -> list:
    """``value`` as a list if it is a list or tuple (``nonempty``: with at least one item)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list, got {describe(value)}")
    if nonempty and not value:
        raise ValueError(f"{name} must not be empty")
    return list(value)


def same_length(name_a: str, a, name_b: str, b) -> None:
    """A ``ValueError`` unless ``len(a) == len(b)``, naming both arguments."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have the same length, got {len(a)} and {len(b)}")


def images(value, name: str = "images", *, like: torch.nn.Module | None = None, size=None) -> torch.Tensor:
    """A batch of images: a finite float tensor ``[B, 3, H, W]`` (``B >= 1``), of the dtype of
    the parameters of the model ``like`` (a convolution would fail on anything else), of
    spatial ``size`` ``(H, W)`` when given."""
    shape = ("B", 3, *(size if size is not None else ("H", "W")))
    tensor(value, name, shape=shape, dtype="float", nonempty=True, finite=True)
    parameter = next(like.parameters(), None) if like is not None else None
    if parameter is not None and value.dtype != parameter.dtype:
        raise ValueError(
            f"{name} must have the model's dtype {parameter.dtype}, got {value.dtype} "
            f"(convert with {name}.to({str(parameter.dtype).removeprefix('torch.')}))"
        )
    return value


def module(value, name: str = "model") -> torch.nn.Module:
    """``value`` if it is a ``torch.nn.Module``, else a ``TypeError``."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {describe(value)}")
    return value


def pair(value, name: str, *, low: int = 1) -> tuple[int, int]:
    """``value`` (an int, or a pair of ints such as ``(H, W)``) as a pair, each ``>= low``."""
    values = tuple(value) if isinstance(value, (list, tuple, torch.Size)) else (value, value)
    if len(values) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints >= {low}, got {value!r}")
    return tuple(integer(v, name, low=low) for v in values)


def labels(value, name: str, *, low: int = 0, high: int | None = None) -> torch.Tensor:
    """``value`` if it is an integer tensor of class indices in ``[low, high]``."""
    tensor(value, name, dtype="int")
    if value.numel() and (value.min() < low or (high is not None and value.max() > high)):
        wanted = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must hold class indices in {wanted}, got values "
                         f"{value.min().item()}..{value.max().item()}")
    return value


def counts(**values) -> None:
    """Each keyword value must be an int >= 1 (numbers of classes, channels, layers...)."""
    for name, value in values.items():
        integer(value, name, low=1)
