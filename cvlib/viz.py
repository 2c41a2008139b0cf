"""Drawing for the notebooks: images, boxes with labels and scores, masks, semantic maps, grids.

Every class has one colour everywhere (``class_color(label)``), so a circle is the same colour in
a semantic map, a box and an instance mask. Functions that draw on an ``Axes`` return their
artists, so a widget can update them in place instead of drawing a new figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patches

from cvlib import _checks

__all__ = [
    "PALETTE",
    "class_color",
    "to_numpy_image",
    "show_image",
    "overlay_heatmap",
    "draw_boxes",
    "colorize_semantic",
    "overlay_masks",
    "image_grid",
    "class_legend",
    "show_matrix",
]

# Every figure of the course is drawn at 100 dpi (legible in JupyterLab and on GitHub; the
# inline backend saves a figure at its own dpi): set once here, where every notebook imports.
FIGURE_DPI = 100
plt.rcParams["figure.dpi"] = FIGURE_DPI

# label 0 = background (dark grey), then matplotlib's tab10 for labels 1, 2, ...
PALETTE = np.array(
    [(0.15, 0.15, 0.15)] + [plt.get_cmap("tab10")(k)[:3] for k in range(10)], dtype=np.float32
)


def class_color(label: int) -> tuple[float, float, float]:
    """The fixed RGB colour of class ``label`` (0 = background)."""
    if isinstance(label, torch.Tensor) and label.numel() == 1:  # labels[k] of a label tensor
        label = label.item()
    _checks.integer(label, "label", low=0)
    return tuple(float(c) for c in PALETTE[int(label) % len(PALETTE)])


def to_numpy_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` (or ``[1, H, W]``, ``[H, W]``) tensor in [0, 1] -> ``[H, W, 3]`` / ``[H, W]``
    float NumPy array for ``imshow``."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a tensor or a NumPy array, got {_checks.describe(image)}")
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = image.transpose(1, 2, 0)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape [3, H, W], [1, H, W] or [H, W], got {image.shape}")
    return np.clip(image, 0.0, 1.0) if image.ndim == 3 else image


def _check_axes(ax) -> None:
    if not isinstance(ax, plt.Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {_checks.describe(ax)}")


def show_image(ax: plt.Axes, image, title: str | None = None, **kwargs):
    """``imshow`` an image tensor on ``ax`` without ticks; return the ``AxesImage``
    (update it later with ``.set_data``)."""
    _check_axes(ax)
    artist = ax.imshow(to_numpy_image(image), **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return artist


def overlay_heatmap(ax: plt.Axes, image, heat, title: str | None = None, alpha: float = 0.6,
                    cmap: str = "viridis", **kwargs):
    """Show ``image`` (``[3, H, W]``) and, on top, the map ``heat`` (``[h, w]``, e.g. an
    attention map of 8 x 8 patches) stretched over the whole image and drawn with opacity
    ``alpha``, so that each value sits on the pixels it describes. Return the map's
    ``AxesImage`` (for ``fig.colorbar``, ``set_data`` and ``set_clim``)."""
    _check_axes(ax)
    _checks.number(alpha, "alpha", low=0.0, high=1.0)
    heat = heat.detach().cpu().float().numpy() if isinstance(heat, torch.Tensor) else np.asarray(heat)
    if heat.ndim != 2:
        raise ValueError(f"heat must have shape [h, w], got {heat.shape}")
    picture = to_numpy_image(image)
    extent = (0, picture.shape[1], picture.shape[0], 0)  # both on the image's pixel coordinates
    show_image(ax, image, title, extent=extent, cmap="gray" if picture.ndim == 2 else None)
    return ax.imshow(heat, cmap=cmap, alpha=alpha, extent=extent, **kwargs)


def draw_boxes(
    ax: plt.Axes,
    boxes: torch.Tensor,
    labels: torch.Tensor | Sequence[int] | None = None,
    scores: torch.Tensor | Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    color=None,
    linewidth: float = 1.5,
    linestyle: str = "-",
) -> list:
    """Draw xyxy ``boxes`` ``[N, 4]`` (pixels) on ``ax``, coloured by label, captioned with the
    class name and score when given. Returns the list of artists (rectangles and texts)."""
    _check_axes(ax)
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.numel() and (boxes.ndim != 2 or boxes.shape[1] != 4):
        raise ValueError(f"boxes must have shape [N, 4], got {tuple(boxes.shape)}")
    _checks.all_finite(boxes, "boxes")
    for name, values in (("labels", labels), ("scores", scores)):
        if values is not None and tuple(torch.as_tensor(values).shape) != (len(boxes),):
            raise ValueError(f"{name} must have one entry per box, shape [{len(boxes)}], got "
                             f"{_checks.describe(values)}")
    boxes = boxes.reshape(-1, 4).tolist()
    artists = []
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        label = int(labels[k]) if labels is not None else None
        edge = color if color is not None else class_color(label if label is not None else 1)
        rect = patches.Rectangle(
            (x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1,
            fill=False, edgecolor=edge, linewidth=linewidth, linestyle=linestyle,
        )
        artists.append(ax.add_patch(rect))
        caption = _caption(label, None if scores is None else float(scores[k]), class_names)
        if caption:
            artists.append(ax.text(
                x1 - 0.5, y1 - 1, caption, fontsize=8, color="white", va="bottom",
                bbox={"facecolor": edge, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
            ))
    return artists


def _caption(label, score, class_names) -> str:
    name = "" if label is None else (class_names[label - 1] if class_names else str(label))
    return f"{name} {score:.2f}".strip() if score is not None else name


def colorize_semantic(semantic: torch.Tensor | np.ndarray) -> np.ndarray:
    """Semantic map ``[H, W]`` of labels (0 = background) -> RGB ``[H, W, 3]`` in class colours."""
    semantic = np.asarray(semantic.cpu() if isinstance(semantic, torch.Tensor) else semantic)
    if semantic.ndim != 2:
        raise ValueError(f"semantic must have shape [H, W], got {semantic.shape}")
    if semantic.dtype.kind not in "iub":
        raise ValueError(f"semantic must hold integer labels, got {semantic.dtype}")
    if semantic.size and semantic.min() < 0:
        raise ValueError(f"semantic must hold labels >= 0, got {semantic.min()}")
    return PALETTE[semantic.astype(np.int64) % len(PALETTE)]


def overlay_masks(
    image: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor | None = None, alpha: float = 0.55
) -> np.ndarray:
    """Blend instance ``masks`` ``[N, H, W]`` (bool, or float thresholded at 0.5) over ``image``
    ``[3, H, W]``: each instance in its class colour (or a distinct colour when ``labels`` is
    None), with a white outline. Returns ``[H, W, 3]``."""
    out = to_numpy_image(image).copy()
    _checks.number(alpha, "alpha", low=0, high=1)
    masks = _checks.tensor(masks, "masks", ndim=(3, 4))
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.shape[1:] != out.shape[:2]:
        raise ValueError(f"masks must be [N, H, W] with the image's (H, W) = {out.shape[:2]}, "
                         f"got {tuple(masks.shape)}")
    _checks.all_finite(masks, "masks")
    masks = (masks > 0.5 if masks.is_floating_point() else masks.bool()).cpu().numpy()
    for k, mask in enumerate(masks):
        colour = class_color(int(labels[k]) if labels is not None else k + 1)
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour)
        out[_outline(mask)] = 1.0
    return out


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def image_grid(
    images: Sequence, titles: Sequence[str] | None = None, ncols: int = 8, size: float = 1.6
):
    """Show ``images`` (tensors ``[3, H, W]`` or arrays ``[H, W, 3]``) in a grid; return
    ``(fig, axes)`` with ``axes`` flattened."""
    _checks.sequence(images, "images", nonempty=True)
    _checks.integer(ncols, "ncols", low=1)
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    height = size * nrows + (0.2 if titles is not None else 0.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, height), squeeze=False)
    axes = axes.ravel()
    for k, ax in enumerate(axes):
        if k < len(images):
            show_image(ax, images[k], titles[k] if titles is not None else None)
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig, axes


def class_legend(ax: plt.Axes | plt.Figure, class_names: Sequence[str], background: bool = True, **kwargs):
    """A legend of the class colours on an axes or a figure (``background`` adds label 0)."""
    if not isinstance(ax, (plt.Axes, plt.Figure)):
        raise TypeError(f"ax must be a matplotlib Axes or Figure, got {_checks.describe(ax)}")
    names = _checks.sequence(class_names, "class_names") if not isinstance(class_names, str) else [0]
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"class_names must be a list of names, got {_checks.describe(class_names)}")
    names = (["background"] if background else []) + list(class_names)
    first = 0 if background else 1
    handles = [patches.Patch(color=class_color(first + k), label=n) for k, n in enumerate(names)]
    return ax.legend(handles=handles, fontsize=8, **kwargs)


def show_matrix(
    ax: plt.Axes,
    values,
    title: str | None = None,
    fmt: str = "{:g}",
    cmap: str = "Blues",
    numbers: bool = True,
    **kwargs,
):
    """Draw a small matrix ``[H, W]`` (tensor or array) as coloured cells with each value
    written in its cell, like the tables of the lecture slides (``numbers=False`` leaves the
    values out, for large matrices). ``kwargs`` go to ``imshow`` (``vmin``, ``vmax``...).
    Returns ``(image, texts)``: the ``AxesImage`` and the list of ``Text`` artists, row by row."""
    _check_axes(ax)
    if isinstance(values, str):
        raise TypeError(f"values must be a matrix (tensor, array, lists), got {_checks.describe(values)}")
    values = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values,
                        dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must have shape [H, W], got {values.shape}")
    image = ax.imshow(values, cmap=cmap, **kwargs)
    texts = []
    if numbers:
        low, high = image.get_clim()
        for (row, col), value in np.ndenumerate(values):
            dark = high > low and (value - low) / (high - low) > 0.6
            texts.append(ax.text(col, row, fmt.format(value), ha="center", va="center",
                                 fontsize=8, color="white" if dark else "black"))
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return image, texts

