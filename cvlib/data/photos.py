"""Real photographs: the ones that ship with scikit-image, the reader's own, and a small
hand-made COCO annotation file for the bundled ones.

Every image comes back as the course's image contract: a float tensor ``[3, H, W]`` in ``[0, 1]``
(grey images are repeated to three channels, an alpha channel is dropped). ``max_side`` shrinks
an image (antialiased bilinear, aspect ratio kept) so that its longer side is at most that many
pixels: real photos are large, and a CPU runs a detector on 320 px several times faster than
on 640 px. Images smaller than ``max_side`` are never enlarged.

``cvlib/data/photos_coco.json`` holds boxes and COCO category ids (the ids torchvision's COCO
detectors predict) for the bundled photos; :func:`target` gives them in torchvision's target
format, scaled to the size :func:`load` returns, ready for :func:`cvlib.metrics.evaluate_detections`.
"""

from __future__ import annotations

import io
import json
import os
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cvlib._checks import integer, tensor

__all__ = [
    "PHOTOS", "COCO_FILE", "names", "load", "from_array", "from_path", "from_upload", "fitted_size",
    "resize",
    "coco", "target", "category_names",
]

# name -> how scikit-image gives it (all are files inside the scikit-image wheel: no download)
PHOTOS = {
    "astronaut": ("astronaut", None),
    "chelsea": ("chelsea", None),
    "coffee": ("coffee", None),
    "motorcycle_left": ("stereo_motorcycle", 0),
    "rocket": ("rocket", None),
}
COCO_FILE = Path(__file__).with_name("photos_coco.json")


def names() -> list[str]:
    """The names of the bundled photos, for :func:`load`."""
    return list(PHOTOS)


def from_array(array) -> torch.Tensor:
    """A NumPy image ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]`` (uint8, bool or float in [0, 1])
    -> float32 ``[3, H, W]`` in ``[0, 1]``."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f"array must be an image [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255
    elif array.dtype == bool or np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("a float array must hold finite values in [0, 1]")
    else:
        raise ValueError(f"array must be uint8, bool or float, got {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def fitted_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """``(height, width)`` shrunk so that the longer side is at most ``max_side`` (ratio kept)."""
    integer(height, "height", low=1)
    integer(width, "width", low=1)
    if max_side is not None and (not isinstance(max_side, int) or max_side < 16):
        raise ValueError(f"max_side must be an int >= 16 or None, got {max_side!r}")
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """Shrink ``[3, H, W]`` to :func:`fitted_size` (antialiased bilinear); unchanged when it
    already fits or ``max_side`` is None."""
    tensor(image, "image", shape=(3, "H", "W"), dtype="float", finite=True)
    size = fitted_size(*image.shape[-2:], max_side)
    if size == tuple(image.shape[-2:]):
        return image
    out = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp(0, 1)


def load(name: str, max_side: int | None = None) -> torch.Tensor:
    """The bundled photo ``name`` (see :func:`names`) as float ``[3, H, W]`` in ``[0, 1]``."""
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {names()}, got {name!r}")
    import skimage.data

    function, index = PHOTOS[name]
    array = getattr(skimage.data, function)()
    return resize(from_array(array if index is None else array[index]), max_side)


def _decode(data: bytes, name: str) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as picture:
            return from_array(np.asarray(picture.convert("RGB")))
    except OSError as error:
        raise ValueError(f"{name} is not an image file PIL can read ({error})") from None


def from_path(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """The reader's own image file (JPEG, PNG, ...) as float ``[3, H, W]`` in ``[0, 1]``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a pathlib.Path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an image file, got {str(path)!r} (no such file)")
    return resize(_decode(path.read_bytes(), "path"), max_side)


def _upload_files(value) -> list[dict]:
    """``FileUpload.value`` of ipywidgets 7.7 (``{name: {"content": bytes, ...}}``) or 8
    (a tuple of ``{"name", "content": memoryview, ...}``) as a list of file dicts."""
    if isinstance(value, dict):
        return [{"name": name, **info} for name, info in value.items()]
    if isinstance(value, (tuple, list)):
        return list(value)
    raise TypeError(f"value must be a FileUpload value (dict in ipywidgets 7, tuple in 8), "
                    f"got {type(value).__name__}")


def from_upload(value, max_side: int | None = None, index: int = 0) -> torch.Tensor:
    """The ``index``-th image of an ipywidgets ``FileUpload.value``, in the format of
    ipywidgets 7.7 (Colab) or 8, as float ``[3, H, W]`` in ``[0, 1]``."""
    files = _upload_files(value)
    if not files:
        raise ValueError("value holds no file: upload an image first")
    if not -len(files) <= integer(index, "index") < len(files):
        raise ValueError(f"index must be in [0, {len(files)}), got {index}")
    entry = files[index]
    if not isinstance(entry, dict) or "content" not in entry:
        raise ValueError("value must hold one dict with a 'content' entry per uploaded file")
    return resize(_decode(bytes(entry["content"]), "value"), max_side)


@cache
def _coco_text() -> str:
    return COCO_FILE.read_text()


def coco() -> dict:
    """The hand-made COCO annotation dict of the bundled photos (``images``, ``annotations``
    with ``bbox`` ``[x, y, w, h]`` in the original pixels, ``categories`` with COCO ids, and
    ``info.description``: how it was made). A fresh copy on each call."""
    return json.loads(_coco_text())


def category_names() -> list[str]:
    """COCO's 91 category names by id - 1 (``"N/A"`` for unused ids), the ``class_names`` that
    :func:`cvlib.viz.draw_boxes` expects for the labels of torchvision's COCO detectors."""
    from torchvision.models._meta import _COCO_CATEGORIES

    return list(_COCO_CATEGORIES[1:])


def target(name: str, max_side: int | None = None) -> dict[str, torch.Tensor]:
    """Ground truth of photo ``name`` in torchvision's format, for the image
    ``load(name, max_side)``: ``boxes`` float ``[M, 4]`` xyxy pixels, ``labels`` int64 ``[M]``
    (COCO category ids)."""
    if name not in PHOTOS:
        raise ValueError(f"name must be one of {names()}, got {name!r}")
    data = coco()
    image = next(i for i in data["images"] if i["file_name"] == name)
    objects = [a for a in data["annotations"] if a["image_id"] == image["id"]]
    boxes = torch.tensor([a["bbox"] for a in objects], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
    height, width = image["height"], image["width"]
    new_h, new_w = fitted_size(height, width, max_side)
    boxes *= torch.tensor([new_w / width, new_h / height] * 2)
    return {"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in objects], dtype=torch.int64)}
