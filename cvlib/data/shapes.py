"""Deterministic synthetic scenes of coloured shapes, for every task in the course.

One scene gives the labels of all four tasks at once (the first picture of the lectures):

- classification: which shape is in a single-object scene (``ShapesClassification``),
- semantic segmentation: ``target["semantic"]``, a class per pixel (0 = background),
- object detection: ``target["boxes"]`` (float xyxy, pixels) and ``target["labels"]`` (1..C),
- instance segmentation: ``target["masks"]``, one boolean mask per object,
- keypoints (with ``keypoints=True``): ``target["keypoints"]``, each shape's corners (below).

Shapes are painted one after another, so later shapes occlude earlier ones; masks hold the
*visible* pixels only and boxes are tight around them (a box ``[x1, y1, x2, y2]`` covers the
pixels ``x1 <= x < x2``, ``y1 <= y < y2``). An object that is mostly hidden is dropped.

Scene ``i`` of a dataset with seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``
(PCG64, the same stream on every machine), so it is identical everywhere and does not depend
on the order in which items are read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cvlib import _checks

__all__ = [
    "CLASSES",
    "STUFF_CLASSES",
    "ShapesDataset",
    "SingleObjectDataset",
    "ShapesClassification",
    "collate_single_object",
    "collate_detection",
    "collate_segmentation",
    "collate_classification",
    "held_out_classification",
    "held_out_detection",
    "held_out_segmentation",
    "to_coco",
    "KEYPOINT_NAMES",
    "NUM_KEYPOINTS",
    "KEYPOINT_SIGMAS",
]

CLASSES = ("circle", "square", "triangle")
STUFF_CLASSES = ("sky", "ground")  # the background regions of a stuff scene (``stuff=True``)
HELD_OUT_SEED = 1  # every model trains on seed-0 scenes and is measured on seed-1 scenes
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024  # a 1024-pixel scene takes ~0.1 GB while drawn; 8192 took 7.5 GB
MIN_VISIBLE_FRACTION = 0.35  # a shape with less of its area visible than this is dropped
MIN_VISIBLE_PIXELS = 12
MAX_ELONGATION = 6.0  # a longer shape of the smallest radius is thinner than two pixels


def _check_args(num_images, image_size, classes, min_objects, max_objects, seed):
    _checks.integer(num_images, "num_images", low=1)
    _checks.integer(image_size, "image_size", low=MIN_IMAGE_SIZE, high=MAX_IMAGE_SIZE)
    _checks.integer(seed, "seed", low=0)  # numpy's SeedSequence takes no negative seed
    if isinstance(classes, str) or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty sequence of names, got {classes!r}")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; classes must be drawn from {CLASSES}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must not repeat, got {classes!r}")
    _checks.integer(max_objects, "max_objects", low=1)
    _checks.integer(min_objects, "min_objects", low=0, high=max_objects)


def _check_radius_range(radius_range, image_size: int):
    """``None``, or ``(low, high)`` radii in pixels with ``1 <= low <= high <= image_size / 2``."""
    if radius_range is None:
        return None
    if isinstance(radius_range, str) or not isinstance(radius_range, (tuple, list)) or len(radius_range) != 2:
        raise ValueError(f"radius_range must be None or a pair (low, high) of radii in pixels, "
                         f"got {radius_range!r}")
    low, high = (float(_checks.number(r, "radius_range", low=1, high=image_size / 2)) for r in radius_range)
    if low > high:
        raise ValueError(f"radius_range must have low <= high, got {radius_range!r}")
    return low, high


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dim, smoothly textured background, ``[H, W, 3]`` float32 in [0, 1]."""
    coarse = rng.uniform(0.0, 1.0, size=(4, 4, 3)).astype(np.float32)
    # bilinear upsampling of a 4x4 random grid gives smooth blotches
    t = np.linspace(0, 3, size, dtype=np.float32)
    i0 = np.minimum(t.astype(int), 2)
    f = (t - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]  # [H, 4, 3]
    g = (t - i0)[None, :, None]
    smooth = rows[:, i0] * (1 - g) + rows[:, i0 + 1] * g  # [H, W, 3]
    base = rng.uniform(0.1, 0.4, size=3).astype(np.float32)
    return base + 0.25 * (smooth - 0.5)


def _stuff_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sky above a wavy horizon, ground below it: the ``[H, W, 3]`` float32 image in [0, 1] and
    the ``[H, W]`` stuff index (0 = sky, 1 = ground). Both stay as dim as the plain background:
    sky a smooth blue gradient, ground brown or green with horizontal furrows and grain."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    horizon = size * rng.uniform(0.35, 0.65) + size * 0.06 * np.sin(
        2 * np.pi * (xs / size * rng.uniform(0.5, 1.5) + rng.uniform(0, 1)))
    ground = ys >= horizon
    sky = np.array([0.12, 0.2, 0.38], dtype=np.float32) + rng.uniform(-0.05, 0.05, size=3).astype(np.float32)
    sky = sky * (0.7 + 0.5 * ys[..., None] / size)  # lighter towards the horizon
    soil = np.array([[0.3, 0.22, 0.12], [0.14, 0.28, 0.1]], dtype=np.float32)[rng.integers(2)]
    furrows = 1 + 0.35 * np.sin(2 * np.pi * ys / rng.uniform(3, 5))[..., None]
    grain = 1 + 0.2 * rng.standard_normal((size, size, 1)).astype(np.float32)
    image = np.where(ground[..., None], soil * furrows * grain, sky).astype(np.float32)
    return image, ground.astype(np.int64)


def _shape_mask(
    name: str, cx: float, cy: float, r: float, angle: float, size: int, stretch=None
) -> np.ndarray:
    """Boolean ``[H, W]`` mask of one shape of "radius" ``r`` centred at pixel (cx, cy);
    ``stretch = (sx, sy)`` scales it by ``sx`` horizontally and ``sy`` vertically."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xs - cx, ys - cy
    if stretch is not None:
        dx, dy = dx / np.float32(stretch[0]), dy / np.float32(stretch[1])
    if name == "circle":
        return dx * dx + dy * dy <= r * r
    if name == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    # triangle: intersection of three half-planes, rotated by `angle`
    inside = np.ones((size, size), dtype=bool)
    for k in range(3):
        a = angle + 2 * np.pi * k / 3
        inside &= dx * np.cos(a) + dy * np.sin(a) <= r * 0.5
    return inside


def _visible(full_masks: list[np.ndarray]) -> list[np.ndarray]:
    """Visible part of each mask when they are painted in order: minus all later masks."""
    visible, above = [], np.zeros_like(full_masks[0]) if full_masks else None
    for mask in reversed(full_masks):
        visible.append(mask & ~above)
        above = above | mask
    return visible[::-1]


def _stretch(rng: np.random.Generator, elongation: float):
    """``None`` (no random draw) when ``elongation == 1``, else ``(sx, sy)``: a shape stretched
    to a random aspect ratio ``a`` in ``[1, elongation]``, along x or y at random, area kept
    (``sx sy = 1``)."""
    if elongation == 1:
        return None
    root = float(np.sqrt(rng.uniform(1.0, elongation)))
    return (root, 1 / root) if rng.integers(2) else (1 / root, root)


def _render(rng: np.random.Generator, size: int, classes: Sequence[str], n: int, radius_range=None,
            stuff: bool = False, elongation: float = 1.0):
    """Draw ``n`` random shapes, drop those mostly hidden by later ones, paint the rest.

    A shape's radius ``r`` is uniform in ``[size / 10, size / 4.5]``, or, with ``radius_range``
    ``(low, high)`` (pixels), log-uniform in it: as many shapes per octave of size, so tiny and
    large objects are equally common. (One draw either way: the default scenes are unchanged.)

    Returns the ``[H, W, 3]`` float32 image, the visible ``[H, W]`` mask, the label (1..C)
    and the pose ``(cx, cy, r, angle)`` of every painted shape. A dropped shape is not painted
    at all, so every visible pixel that is not background belongs to a labelled object. With
    ``stuff``, the background is sky and ground (:func:`_stuff_background`, drawn after
    everything else, so the shapes are those of the plain scene), and a fifth value is the
    ``[H, W]`` stuff index (else None).
    """
    image = _background(rng, size)
    shapes = []  # (full mask, label, colour, shade), in painting order
    for _ in range(n):
        label = int(rng.integers(len(classes)))
        if radius_range is None:
            r = float(rng.uniform(size / 10, size / 4.5))
        else:
            r = float(np.exp(rng.uniform(np.log(radius_range[0]), np.log(radius_range[1]))))
        stretch = _stretch(rng, elongation)  # no draw by default: the default scenes stay the same
        cx, cy = rng.uniform(r * 0.6, size - r * 0.6, size=2)
        angle = float(rng.uniform(0, 2 * np.pi))
        mask = _shape_mask(classes[label], cx, cy, r, angle, size, stretch)
        colour = rng.uniform(0.45, 1.0, size=3).astype(np.float32)
        colour[rng.integers(3)] *= rng.uniform(0.1, 0.5)  # saturate: one channel darker
        shade = 1 + 0.08 * rng.standard_normal((size, size, 1)).astype(np.float32)
        shapes.append((mask, label + 1, colour, shade, (float(cx), float(cy), r, angle)))
    noise = 0.04 * rng.standard_normal(image.shape).astype(np.float32)
    if stuff:
        image, stuff_index = _stuff_background(rng, size)
    visible = _visible([mask for mask, *_ in shapes])
    shapes = [  # removing a shape only uncovers the others, so one pass suffices
        shape for shape, v in zip(shapes, visible)
        if v.sum() >= MIN_VISIBLE_PIXELS and v.sum() >= MIN_VISIBLE_FRACTION * shape[0].sum()
    ]
    for mask, _, colour, shade, _ in shapes:
        image = np.where(mask[..., None], colour * shade, image)
    image = np.clip(image + noise, 0.0, 1.0).astype(np.float32)
    masks, labels, poses = _visible([s[0] for s in shapes]), [s[1] for s in shapes], [s[4] for s in shapes]
    return image, masks, labels, poses, (stuff_index if stuff else None)


def _mask_box(mask: np.ndarray) -> list[float]:
    """Tight xyxy box of the True pixels of a ``[H, W]`` mask (x2, y2 exclusive)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return [float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)]


# Keypoints: the natural landmarks of each shape, in COCO's (x, y, visibility) format

NUM_KEYPOINTS = 5  # K: the most any shape has (a circle); a shape with fewer leaves slots unlabelled
KEYPOINT_NAMES = {  # what keypoint k of each class is; a triangle's vertices start at the topmost
    "circle": ("centre", "top", "right", "bottom", "left"),
    "square": ("top-left", "top-right", "bottom-right", "bottom-left"),
    "triangle": ("top vertex", "next vertex clockwise", "last vertex clockwise"),
}
# OKS's per-keypoint tolerance (COCO: 0.025 for eyes to 0.107 for hips, the spread of human
# annotators). Every keypoint here is exact, so one value sets how strict keypoint AP is: with
# 0.1, a keypoint d pixels off on an object of area s^2 scores exp(-d^2 / (2 s^2 (2 * 0.1)^2));
# on a median object (s about 15 px) OKS 0.5 allows 3.5 px, OKS 0.95 about 1 px.
KEYPOINT_SIGMAS = torch.full((NUM_KEYPOINTS,), 0.1)


def _shape_keypoints(name: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """The keypoints ``[k, 2]`` (x, y in pixels, the box convention: pixel ``i`` spans
    ``i..i+1``) of the shape that :func:`_shape_mask` draws, in the order of
    ``KEYPOINT_NAMES[name]``: a circle's centre and its top, right, bottom and left points, a
    square's four corners clockwise from the top-left, a triangle's three vertices clockwise
    (on screen, y down) from the topmost one."""
    if name not in KEYPOINT_NAMES:
        raise ValueError(f"name must be one of {tuple(KEYPOINT_NAMES)}, got {name!r}")
    if name == "circle":
        return np.array([[cx, cy], [cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]])
    if name == "square":
        h = r * 0.85
        return np.array([[cx - h, cy - h], [cx + h, cy - h], [cx + h, cy + h], [cx - h, cy + h]])
    # the vertex opposite edge k lies at distance r against that edge's normal (angle + 2 pi k / 3);
    # k increasing turns clockwise on screen, so start at the topmost and keep the order
    normals = angle + 2 * np.pi * np.arange(3) / 3
    vertices = np.stack([cx - r * np.cos(normals), cy - r * np.sin(normals)], axis=1)
    return np.roll(vertices, -int(vertices[:, 1].argmin()), axis=0)


def _keypoints(masks: list[np.ndarray], labels: list[int], poses: list, classes: Sequence[str]) -> np.ndarray:
    """COCO keypoints ``[N, NUM_KEYPOINTS, 3]`` float32 of the painted shapes: (x, y, v) with
    v = 2 labelled and visible, 1 labelled but hidden (its pixel belongs to a shape painted
    later), 0 not labelled (outside the image, or a slot the class does not use), COCO's
    convention: an unlabelled keypoint is (0, 0, 0)."""
    size = masks[0].shape[0] if masks else 0
    keypoints = np.zeros((len(labels), NUM_KEYPOINTS, 3), dtype=np.float32)
    for i, (label, pose) in enumerate(zip(labels, poses)):
        above = np.any(masks[i + 1:], axis=0) if i + 1 < len(masks) else np.zeros((size, size), dtype=bool)
        for k, (x, y) in enumerate(_shape_keypoints(classes[label - 1], *pose)):
            if 0 <= x < size and 0 <= y < size:
                keypoints[i, k] = (x, y, 1 if above[int(y), int(x)] else 2)
    return keypoints


class ShapesDataset(Dataset):
    """Scenes of up to ``max_objects`` coloured shapes on a textured background.

    Item ``i`` is ``(image, target)``:

    - ``image``: float32 ``[3, H, W]`` in ``[0, 1]``, ``H = W = image_size``
    - ``target["boxes"]``: float32 ``[N, 4]`` xyxy in pixels, tight around the visible pixels
    - ``target["labels"]``: int64 ``[N]`` in ``1..C`` (index into ``classes`` plus one)
    - ``target["masks"]``: bool ``[N, H, W]``, visible pixels of each object
    - ``target["semantic"]``: int64 ``[H, W]``, the label of the visible object, 0 = background
    - ``target["image_id"]``: int, equal to ``i``
    - with ``keypoints=True`` also ``target["keypoints"]``: float32 ``[N, K, 3]``, ``K =
      NUM_KEYPOINTS`` (5), COCO's ``(x, y, visibility)`` as torchvision's Keypoint R-CNN reads
      it: keypoint ``k`` is ``KEYPOINT_NAMES[class][k]``; visibility 2 = visible, 1 = hidden by
      a shape in front, 0 = not labelled (outside the image, or a slot the class does not have:
      a square uses 4, a triangle 3). It changes nothing else: the same seeds give the same
      scenes with or without it.

    ``N`` is between ``min_objects`` and ``max_objects`` (objects hidden by more than
    ``1 - MIN_VISIBLE_FRACTION`` are dropped, so it can be lower; ``N`` may be 0).

    A shape's "radius" ``r`` (a circle's radius; a square's half side is ``0.85 r``, a
    triangle's corners lie ``r`` from its centre) is uniform in ``[image_size / 10,
    image_size / 4.5]`` (6.4 to 14.2 pixels at 64 x 64). ``radius_range=(low, high)`` draws it
    log-uniformly in ``[low, high]`` pixels instead, for scenes with very small and large objects
    (feature pyramids, AP by object size); ``None`` (default) leaves every scene as it was.

    ``elongation > 1`` (off by default) stretches every shape to a random aspect ratio between
    1 and ``elongation`` (at most ``MAX_ELONGATION``), horizontally or vertically, with the
    same area: long thin objects, for detectors with anchor shapes (notebook 06). With the
    default 1 every scene is the same as without the option. (Not with ``keypoints``: the
    landmarks are those of unstretched shapes.)

    ``stuff=True`` (panoptic segmentation): the background is two *stuff* regions, sky above a
    wavy horizon and ground below, each with its own texture; ``target["semantic"]`` then labels
    them ``C + 1`` (sky) and ``C + 2`` (ground) (``STUFF_CLASSES``), so 0 does not occur. The
    objects are those of the plain scene with the same seed and index.
    """

    def __init__(
        self,
        num_images: int,
        image_size: int = 64,
        max_objects: int = 3,
        seed: int = 0,
        classes: Sequence[str] = CLASSES,
        min_objects: int = 1,
        keypoints: bool = False,
        radius_range: tuple[float, float] | None = None,
        stuff: bool = False,
        elongation: float = 1.0,
    ):
        _check_args(num_images, image_size, classes, min_objects, max_objects, seed)
        self.elongation = _checks.number(elongation, "elongation", low=1, high=MAX_ELONGATION)
        if not isinstance(keypoints, bool):
            raise TypeError(f"keypoints must be True or False, got {keypoints!r}")
        if not isinstance(stuff, bool):
            raise TypeError(f"stuff must be True or False, got {_checks.describe(stuff)}")
        if keypoints and self.elongation != 1:
            raise ValueError("keypoints must be False when elongation > 1: they mark unstretched shapes")
        self.keypoints = keypoints
        self.radius_range = _check_radius_range(radius_range, image_size)
        self.stuff = stuff
        self.num_images = num_images
        self.image_size = image_size
        self.max_objects = max_objects
        self.min_objects = min_objects
        self.seed = seed
        self.classes = tuple(classes)

    @property
    def num_classes(self) -> int:
        """Number of object classes ``C`` (background not counted)."""
        return len(self.classes)

    def __len__(self) -> int:
        return self.num_images

    def _num_objects(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.min_objects, self.max_objects + 1))

    def __getitem__(self, index: int):
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        index %= self.num_images
        rng = np.random.default_rng([self.seed, index])
        image, masks, labels, poses, stuff_index = _render(rng, self.image_size, self.classes,
                                                           self._num_objects(rng), self.radius_range,
                                                           self.stuff, self.elongation)
        target = self._target(masks, labels, index)
        if self.keypoints:
            target["keypoints"] = torch.from_numpy(_keypoints(masks, labels, poses, self.classes))
        if self.stuff:  # background pixels: sky C + 1 or ground C + 2
            background = target["semantic"] == 0
            stuff_labels = torch.from_numpy(stuff_index) + self.num_classes + 1
            target["semantic"][background] = stuff_labels[background]
        return torch.from_numpy(image.transpose(2, 0, 1).copy()), target

    def _target(self, masks, labels, index) -> dict:
        h = w = self.image_size
        semantic = np.zeros((h, w), dtype=np.int64)
        for m, label in zip(masks, labels):
            semantic[m] = label
        return {
            "boxes": torch.tensor([_mask_box(m) for m in masks], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.bool),
            "semantic": torch.from_numpy(semantic),
            "image_id": index,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_images={self.num_images}, image_size={self.image_size}, "
            f"max_objects={self.max_objects}, seed={self.seed}, classes={self.classes}"
            + (", keypoints=True" if self.keypoints else "") + (", stuff=True" if self.stuff else "")
            + (f", radius_range={self.radius_range}" if self.radius_range is not None else "")
            + (f", elongation={self.elongation}" if self.elongation != 1 else "") + ")"
        )


class SingleObjectDataset(ShapesDataset):
    """Scenes with exactly one, fully visible shape: classification + localization.

    Items are ``(image, target)`` as in :class:`ShapesDataset`, with ``N == 1``.
    """

    def __init__(
        self, num_images: int, image_size: int = 64, seed: int = 0, classes: Sequence[str] = CLASSES
    ):
        super().__init__(num_images, image_size, 1, seed, classes, min_objects=1)


class ShapesClassification(SingleObjectDataset):
    """Single-object scenes for image classification.

    Item ``i`` is ``(image, label)``: ``image`` float32 ``[3, H, W]``, ``label`` an int in
    ``0..C-1`` (the index into ``classes``; classification has no background class). The
    full target of the same scene is ``SingleObjectDataset.__getitem__(self, i)``, whose
    ``masks`` scores explanation maps against the object.
    """

    def __getitem__(self, index: int):
        image, target = super().__getitem__(index)
        return image, int(target["labels"][0]) - 1


def _unzip(batch) -> tuple[tuple, tuple]:
    """``(images, targets)`` of a non-empty list of ``(image, target)`` items."""
    items = _checks.sequence(batch, "batch", nonempty=True)
    if not all(isinstance(item, (list, tuple)) and len(item) == 2 for item in items):
        raise ValueError(f"batch must be a list of (image, target) pairs, got {_checks.describe(items[0])}")
    images, targets = zip(*items)
    return images, targets


def collate_single_object(batch):
    """``[(image, target), ...]`` of single-object scenes -> images ``[B, 3, H, W]`` and
    ``{"labels": [B] (0..C-1), "boxes": [B, 4] xyxy pixels}``."""
    images, targets = _unzip(batch)
    return torch.stack(images), {
        "labels": torch.stack([t["labels"][0] - 1 for t in targets]),
        "boxes": torch.stack([t["boxes"][0] for t in targets]),
    }


def collate_detection(batch):
    """``[(image, target), ...]`` -> ``(list of images, list of targets)``, torchvision style."""
    images, targets = _unzip(batch)
    return list(images), list(targets)


def collate_segmentation(batch):
    """``[(image, target), ...]`` -> images ``[B, 3, H, W]`` and semantic maps ``[B, H, W]``."""
    images, targets = _unzip(batch)
    return torch.stack(images), torch.stack([t["semantic"] for t in targets])


def collate_classification(batch):
    """``[(image, label), ...]`` -> images ``[B, 3, H, W]`` and labels int64 ``[B]``."""
    images, labels = _unzip(batch)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def held_out_classification(n: int = 100, device=None):
    """The first ``n`` held-out single-object scenes (``ShapesClassification(n, seed=1)``; the
    classifiers trained on seed 0), as three tensors on ``device``: images float32
    ``[n, 3, 64, 64]``, labels int64 ``[n]`` (``0..C-1``) and the object's mask bool
    ``[n, 64, 64]`` (``SingleObjectDataset(n, seed=1)[i][1]["masks"][0]``, the same scene),
    against which an explanation map is scored."""
    _checks.integer(n, "n", low=1)
    scenes = SingleObjectDataset(n, seed=HELD_OUT_SEED)
    images, targets = zip(*(scenes[i] for i in range(n)))
    labels = torch.tensor([int(t["labels"][0]) - 1 for t in targets], dtype=torch.int64)
    masks = torch.stack([t["masks"][0] for t in targets])
    return torch.stack(images).to(device), labels.to(device), masks.to(device)


def held_out_detection(n: int = 200, **scene_options):
    """The first ``n`` held-out detection scenes (``ShapesDataset(n, seed=1)``; the detectors
    trained on seed 0), collated by :func:`collate_detection`: a list of ``n`` images
    ``[3, 64, 64]`` and a list of ``n`` targets (``boxes``, ``labels``, ``masks``, and
    ``keypoints`` with ``keypoints=True``). ``scene_options`` (``keypoints``, ``stuff``,
    ``max_objects``, ``radius_range``, ...) go to :class:`ShapesDataset`, for the held-out scenes
    of detectors trained on other scenes of seed 0 (``stuff=True``: the same objects on sky and
    ground)."""
    _checks.integer(n, "n", low=1)
    if "seed" in scene_options:
        raise ValueError("held_out_detection's scenes have seed 1; pass no seed")
    return collate_detection(list(ShapesDataset(n, seed=HELD_OUT_SEED, **scene_options)))


def held_out_segmentation(n: int = 200, **scene_options) -> tuple[torch.Tensor, torch.Tensor]:
    """The same held-out scenes as :func:`held_out_detection` as a segmentation batch
    (:func:`collate_segmentation`): images ``[n, 3, 64, 64]`` and class maps ``[n, 64, 64]``
    (int64, 0 = background); the scenes on which every segmenter is measured."""
    _checks.integer(n, "n", low=1)
    if "seed" in scene_options:
        raise ValueError("held_out_segmentation's scenes have seed 1; pass no seed")
    return collate_segmentation(list(ShapesDataset(n, seed=HELD_OUT_SEED, **scene_options)))


def to_coco(dataset: ShapesDataset) -> dict:
    """The ground truth of ``dataset`` as a COCO-format dict that ``pycocotools.coco.COCO`` loads.

    Boxes become ``[x, y, w, h]``, masks run-length encoded (RLE), ``area`` is the number of
    visible pixels, image ids are dataset indices and category ids are the labels ``1..C``.
    A dataset made with ``keypoints=True`` adds COCO's ``keypoints`` (``[x1, y1, v1, ...]``)
    and ``num_keypoints`` to each annotation and the keypoint names to each category.
    """
    from pycocotools import mask as mask_utils

    if not isinstance(dataset, ShapesDataset):
        raise TypeError(f"dataset must be a ShapesDataset, got {type(dataset).__name__}")
    images, annotations = [], []
    for index in range(len(dataset)):
        _, target = ShapesDataset.__getitem__(dataset, index)
        images.append({"id": index, "width": dataset.image_size, "height": dataset.image_size})
        for j, (box, label, mask) in enumerate(zip(target["boxes"], target["labels"], target["masks"])):
            rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            x1, y1, x2, y2 = box.tolist()
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": index,
                "category_id": int(label),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(mask.sum()),
                "segmentation": rle,
                "iscrowd": 0,
            })
            if dataset.keypoints:
                keypoints = target["keypoints"][j]
                annotations[-1]["keypoints"] = keypoints.flatten().tolist()
                annotations[-1]["num_keypoints"] = int((keypoints[:, 2] > 0).sum())
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(dataset.classes)]
    if dataset.keypoints:
        for category in categories:
            category["keypoints"] = list(KEYPOINT_NAMES[category["name"]])
    return {"images": images, "annotations": annotations, "categories": categories}
