"""torchvision models with pretrained weights, when they can be had.

Weights come only through torchvision's weights API (``torchvision.models.get_model(name,
weights=...)``): torchvision downloads them once into ``$TORCH_HOME/hub/checkpoints`` (by default
``~/.cache/torch``) and reads them from there afterwards. :func:`load` never raises for a
missing download: offline, without disk space or with a broken file it returns ``None`` and a
one-line reason, so a notebook can skip its real-photo section and say why.

Genuine or not: torchvision names each file ``<name>-<first hex digits of its SHA-256>.pth``
(``resnet18-f37072fd.pth``); a cached file whose SHA-256 starts with that prefix is the
published file. Anything else under that name (random weights written by the tests with
:func:`write_random_weights`, a truncated copy) loads if it has the right shapes, but is
reported as not genuine, and a notebook then asserts only what holds for any weights.

For a classroom, fetch everything once before the lesson (sizes: ``--list``)::

    python -m cvlib.pretrained --download            # every model of the catalogue
    python -m cvlib.pretrained --download resnet18   # just these
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import re
import shutil
import socket
import urllib.error
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from cvlib._checks import choice, describe, integer, pair, tensor

__all__ = [
    "CATALOGUE", "Pretrained", "weights_of", "checkpoint_path", "download_mb", "is_genuine",
    "load", "write_random_weights", "trace_rcnn", "multiscale_anchors", "multiscale_roi_align",
    "main",
]

# name -> (weights enum, what it shows in the course). The smallest weights that show each point;
# every one is a torchvision weights enum, its download size is its meta["_file_size"] (MB).
CATALOGUE = {
    "resnet18": ("ResNet18_Weights.IMAGENET1K_V1", "09: saliency, CAM, Grad-CAM on ImageNet"),
    "lraspp_mobilenet_v3_large": ("LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
                                  "03: semantic segmentation, 21 VOC classes"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ("FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1",
                                              "05, 06: two-stage detection on COCO"),
    "ssdlite320_mobilenet_v3_large": ("SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
                                      "06: single-stage detection on COCO"),
    "maskrcnn_resnet50_fpn": ("MaskRCNN_ResNet50_FPN_Weights.COCO_V1", "08: instance segmentation"),
    "vit_b_16": ("ViT_B_16_Weights.IMAGENET1K_V1", "01: a Vision Transformer on ImageNet"),
    "vgg16": ("VGG16_Weights.IMAGENET1K_V1", "11: Gatys style transfer on VGG features (the largest file)"),
}
# The builders' default backbones would be downloaded too when building without weights.
_NO_BACKBONE = {"weights_backbone": None}


class Pretrained(NamedTuple):
    """What :func:`load` returns: the model in eval mode (or None), whether its weights are the
    published file, and the one-line message it printed."""

    model: nn.Module | None
    genuine: bool
    message: str


def _check_name(name: str) -> None:
    choice(name, "name", sorted(CATALOGUE))


def weights_of(name: str) -> torchvision.models.WeightsEnum:
    """The torchvision weights enum of catalogue model ``name``."""
    _check_name(name)
    return torchvision.models.get_weight(CATALOGUE[name][0])


def checkpoint_path(name: str) -> Path:
    """Where torchvision caches the weights of ``name``: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    file_name = os.path.basename(urlparse(weights_of(name).url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def download_mb(name: str) -> float:
    """The download size of the weights of ``name`` in MB (torchvision's ``meta["_file_size"]``)."""
    return float(weights_of(name).meta["_file_size"])


_genuine_cache: dict[tuple, bool] = {}


def is_genuine(path: str | Path) -> bool:
    """True when the SHA-256 of the file ``path`` starts with the hex prefix in its torchvision
    file name (``resnet18-f37072fd.pth``: ``f37072fd``). The result is remembered per file
    size and modification time (hashing 330 MB takes a second or two)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or Path), got {describe(path)}")
    path = Path(path)
    match = re.search(r"-([0-9a-f]{6,64})\.", path.name)
    if match is None or not path.is_file():
        return False
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _genuine_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        _genuine_cache[key] = digest.hexdigest().startswith(match.group(1))
    return _genuine_cache[key]


def _reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether the download server answers at all (offline machines fail here fast, instead of
    waiting on torch.hub's download, which has no timeout)."""
    host = urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:160]


def _download_problem(name: str, path: Path) -> str | None:
    """Why the weights of ``name`` cannot be downloaded now, or None when they may be."""
    directory = path.parent
    free_dir = next((p for p in [directory, *directory.parents] if p.exists()), Path("/"))
    need = download_mb(name) * 1.05e6
    if shutil.disk_usage(free_dir).free < need:
        return f"no space: {download_mb(name):.0f} MB needed in {directory}"
    if not _reachable(weights_of(name).url):
        return (f"offline ({urlparse(weights_of(name).url).hostname} unreachable); "
                f"pre-fetch: python -m cvlib.pretrained --download {name}")
    return None


def _reason(error: BaseException, path: Path) -> str:
    if isinstance(error, urllib.error.URLError | ConnectionError | TimeoutError | socket.gaierror):
        return f"offline: the download failed ({_first_line(error)})"
    if isinstance(error, OSError) and error.errno == 28:
        return f"no space left while writing {path}"
    if isinstance(error, PermissionError):
        return f"cannot write to {path.parent} (set $TORCH_HOME to a writable folder)"
    if "hash" in str(error).lower():
        return f"the download was corrupted (hash mismatch); delete {path} and try again"
    if path.exists():
        return f"the cached file {path} does not load ({_first_line(error)}); delete it and try again"
    return _first_line(error)


def load(name: str, download: bool | None = None, verbose: bool = True) -> Pretrained:
    """Catalogue model ``name`` with its pretrained weights, in eval mode, or ``None``.

    Prints one line with the download size: loaded (genuine or not) or skipped and why; before
    a download it first prints the size and where the file goes.
    ``download=False`` uses only what is cached; None (the default) downloads unless the
    environment variable ``CVLIB_NO_DOWNLOAD=1`` is set (for CI runs that must not fetch
    1.2 GB). Never raises for a missing or broken download (only for an unknown ``name``).
    """
    _check_name(name)
    for flag, value in (("download", download), ("verbose", verbose)):
        if not isinstance(value, bool) and not (flag == "download" and value is None):
            raise TypeError(f"{flag} must be a bool{' or None' if flag == 'download' else ''}, "
                            f"got {describe(value)}")
    if download is None:
        download = os.environ.get("CVLIB_NO_DOWNLOAD") != "1"
    path = checkpoint_path(name)
    cached = path.is_file()
    header = f"{name}: {download_mb(name):.1f} MB ({path.name}, {'cached' if cached else 'not cached'})"
    problem = None
    if not cached:
        problem = "not cached, downloads switched off" if not download else _download_problem(name, path)
    model = None
    if problem is None:
        if verbose and not cached:  # the size first, before a long download starts
            print(f"{header}; downloading into {path.parent} ...")
        try:
            model = torchvision.models.get_model(name, weights=weights_of(name)).eval()
        except Exception as error:  # any failure becomes one line, never a traceback
            problem = _reason(error, path)
    genuine = model is not None and is_genuine(path)
    if model is None:
        message = f"{header}; skipped: {problem}"
    else:
        message = (f"{header}; loaded, genuine weights" if genuine else
                   f"{header}; loaded, but NOT genuine: its SHA-256 does not start with its name's hash")
    if verbose:
        print(message)
    return Pretrained(model, genuine, message)


def write_random_weights(name: str, seed: int = 0) -> Path:
    """Save random weights of ``name``'s architecture under torchvision's file name in the cache.

    For tests and offline rehearsals: :func:`load` then finds and loads them (same shapes, same
    compute as the real weights) and reports them as not genuine. torchvision's initialization,
    plus small noise on parameters it sets to a constant (a ViT's zero head and CLS token), so
    that a wrong mapping of any parameter changes the outputs. Overwrites a cached file.
    """
    weights = weights_of(name)
    torch.manual_seed(integer(seed, "seed", low=0))
    extra = _NO_BACKBONE if "weights_backbone" in _builder_parameters(name) else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=len(weights.meta["categories"]),
                                         **extra)
    with torch.no_grad():  # constant initial values (zero heads, unit norms) would hide mix-ups
        for parameter in model.parameters():
            if parameter.numel() == 1 or parameter.std() == 0:
                parameter.add_(0.02 * torch.randn_like(parameter))
    path = checkpoint_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def _builder_parameters(name: str):
    return inspect.signature(torchvision.models.get_model_builder(name)).parameters


# --- looking inside torchvision's R-CNNs: the tensors that cvlib's own ops are checked against ---

class _Spy:
    """Forward hooks that keep a module's inputs and output, removed on exit."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.modules, self.records, self.handles = modules, {}, []

    def __enter__(self):
        for key, module in self.modules.items():
            def hook(_module, inputs, output, key=key):
                self.records[key] = {"inputs": inputs, "output": output}
            self.handles.append(module.register_forward_hook(hook))
        return self.records

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def trace_rcnn(model: nn.Module, image: torch.Tensor) -> dict:
    """Run torchvision's Faster or Mask R-CNN on one image ``[3, H, W]`` in ``[0, 1]`` and keep
    what its stages computed (the model is left unchanged):

    - ``"input"``: the resized, normalized batch ``[1, 3, h, w]`` the backbone saw,
    - ``"features"``: the backbone's (FPN) feature maps, name -> ``[1, C, h_l, w_l]``,
    - ``"anchors"``: the RPN's anchors ``[A, 4]`` (all levels, in the resized image's pixels),
    - ``"proposals"``: the RPN's proposals ``[P, 4]``,
    - ``"box_features"``: the box head's RoI features ``[P, C, 7, 7]`` (MultiScaleRoIAlign),
    - ``"nms"``: every ``batched_nms`` call (RPN, then detections) as dicts of ``boxes``,
      ``scores``, ``idxs``, ``iou_threshold`` and the ``keep`` indices it returned,
    - Mask R-CNN only: ``"mask_boxes"`` ``[D, 4]`` (the detections, resized image's pixels),
      ``"mask_features"`` ``[D, C, 14, 14]`` (MultiScaleRoIAlign) and the mask head's
      ``"mask_logits"`` ``[D, classes, 28, 28]``,
    - ``"detections"``: the model's output dict, in the original image's pixels.
    """
    from torchvision.models.detection import FasterRCNN
    from torchvision.ops import boxes as box_ops

    if not isinstance(model, FasterRCNN):
        raise TypeError(f"model must be torchvision's Faster or Mask R-CNN, got {describe(model)}")
    _check_image(image, model)
    model.eval()
    heads = model.roi_heads
    watched = {"transform": model.transform, "backbone": model.backbone,
               "anchors": model.rpn.anchor_generator, "rpn": model.rpn, "box_pool": heads.box_roi_pool}
    if getattr(heads, "mask_predictor", None) is not None:
        watched.update(mask_pool=heads.mask_roi_pool, mask_predictor=heads.mask_predictor)
    calls, original = [], box_ops.batched_nms

    def recording_nms(boxes, scores, idxs, iou_threshold):
        keep = original(boxes, scores, idxs, iou_threshold)
        calls.append({"boxes": boxes, "scores": scores, "idxs": idxs, "iou_threshold": iou_threshold,
                      "keep": keep})
        return keep

    box_ops.batched_nms = recording_nms
    try:
        with _Spy(watched) as records:
            detections = model([image])[0]
    finally:
        box_ops.batched_nms = original
    trace = {
        "input": records["transform"]["output"][0].tensors,
        "features": records["backbone"]["output"],
        "anchors": records["anchors"]["output"][0],
        "proposals": records["rpn"]["output"][0][0],
        "box_features": records["box_pool"]["output"],
        "nms": calls,
        "detections": detections,
    }
    if "mask_predictor" in records:
        trace["mask_logits"] = records["mask_predictor"]["output"]
        trace["mask_boxes"] = records["mask_pool"]["inputs"][1][0]
        trace["mask_features"] = records["mask_pool"]["output"]
    return trace


def _check_image(image, model: nn.Module) -> None:
    """One image ``[3, H, W]`` in ``[0, 1]``, of the model's dtype."""
    tensor(image, "image", shape=(3, "H", "W"), dtype="float", finite=True, nonempty=True)
    dtype = next(model.parameters()).dtype
    if image.dtype != dtype:
        raise ValueError(f"image must have the model's dtype {dtype}, got {image.dtype}")
    if image.min() < 0 or image.max() > 1:
        low, high = image.min().item(), image.max().item()
        raise ValueError(f"image must hold values in [0, 1], got {low:.3g}..{high:.3g}")


def _check_features(features, count: int | None = None) -> None:
    """A dict of feature maps ``name -> [B, C, h, w]`` float tensors (``count`` of them)."""
    if not isinstance(features, dict):
        raise TypeError(f"features must be a dict of feature maps, got {describe(features)}")
    for key, feature in features.items():
        tensor(feature, f"features[{key!r}]", ndim=4, dtype="float")
    if count is not None and len(features) != count:
        raise ValueError(f"features must hold one map per level of the generator ({count}), "
                         f"got {len(features)}")


def multiscale_anchors(generator: nn.Module, image_size, features: dict) -> torch.Tensor:
    """:func:`cvlib.ops.generate_anchors` for every feature map, with the scales and aspect ratios
    of torchvision's ``AnchorGenerator`` ``generator`` and its stride rule (image size // map
    size): ``[A, 4]``, the anchors of all levels in order, as the generator makes them."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    from cvlib.ops import generate_anchors

    if not isinstance(generator, AnchorGenerator):
        raise TypeError(f"generator must be torchvision's AnchorGenerator, got {describe(generator)}")
    image_size = pair(image_size, "image_size")
    _check_features(features, len(generator.sizes))
    for key, feature in features.items():
        if any(f > s for f, s in zip(feature.shape[-2:], image_size)):
            raise ValueError(f"features[{key!r}] must not be larger than image_size {image_size}, "
                             f"got {tuple(feature.shape[-2:])}")
    anchors = []
    for feature, sizes, ratios in zip(features.values(), generator.sizes, generator.aspect_ratios):
        stride = [s // f for s, f in zip(image_size, feature.shape[-2:])]
        anchors.append(generate_anchors(feature.shape[-2:], stride, sizes, ratios))
    return torch.cat(anchors)


def multiscale_roi_align(pool: nn.Module, features: dict, boxes: torch.Tensor) -> torch.Tensor:
    """FPN's RoI pooling written with cvlib: :func:`cvlib.ops.roi_levels` picks each box's
    pyramid level (larger boxes read coarser maps) and :func:`cvlib.ops.roi_align` pools it
    there, with the settings of torchvision's ``MultiScaleRoIAlign`` ``pool`` (its maps, scales,
    output size, sampling ratio). ``boxes [K, 4]`` of one image -> ``[K, C, S, S]``, the same
    numbers as ``pool``'s output. ``pool`` must have run once (it sets its scales then)."""
    from torchvision.ops import MultiScaleRoIAlign

    from cvlib.ops.boxes import _check_boxes
    from cvlib.ops.roi import multiscale_roi_align

    if not isinstance(pool, MultiScaleRoIAlign):
        raise TypeError(f"pool must be torchvision's MultiScaleRoIAlign, got {describe(pool)}")
    _check_features(features)
    names = [n for n in features if n in pool.featmap_names]
    if pool.scales is None:
        raise ValueError("pool must have run once, as in the model's forward pass (it sets its scales)")
    if len(pool.scales) != len(names):
        raise ValueError(f"features must hold the pool's maps {list(pool.featmap_names)}, "
                         f"got {list(features)}")
    _check_boxes(boxes)
    return multiscale_roi_align([features[name] for name in names], [boxes], pool.output_size, pool.scales,
                                pool.sampling_ratio, getattr(pool, "canonical_scale", 224.0),
                                getattr(pool, "canonical_level", 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvlib.pretrained", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="catalogue names (default: all)")
    parser.add_argument("--list", action="store_true", help="names, sizes and what each shows")
    parser.add_argument("--download", action="store_true", help="fetch the weights into $TORCH_HOME")
    args = parser.parse_args(argv)
    names = args.names or list(CATALOGUE)
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        parser.error(f"unknown names {unknown}; choose from {sorted(CATALOGUE)}")
    if args.download:
        failed = [n for n in names if load(n).model is None]
        return 1 if failed else 0
    for n in names:
        cached = "cached" if checkpoint_path(n).is_file() else "-"
        print(f"{n:40s} {download_mb(n):7.1f} MB  {cached:10s} {CATALOGUE[n][1]}")
    total = sum(download_mb(n) for n in names)
    print(f"{'total':40s} {total:7.1f} MB  in {Path(torch.hub.get_dir()) / 'checkpoints'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
