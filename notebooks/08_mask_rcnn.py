# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Instance segmentation: Mask R-CNN
#
# A detector says *where* each object is with a box; **instance segmentation** says which
# pixels belong to each object. Mask R-CNN (He et al. 2017) adds one branch to Faster R-CNN:
# for every RoI, a small fully convolutional **mask head** predicts an $M \times M$ mask
# ($M = 28$) **per class**, from a RoI Align feature. Its loss is added to the four of Faster
# R-CNN,
#
# $$L = L_{cls} + L_{box} + L_{mask}, \qquad
# L_{mask} = -\frac{1}{M^2} \sum_{ij} \Big[ y_{ij} \log \sigma(m^{k}_{ij})
#   + (1 - y_{ij}) \log\big(1 - \sigma(m^{k}_{ij})\big) \Big],$$
#
# a per-pixel binary cross-entropy on the map $m^k$ of the RoI's **ground-truth class $k$
# only**; $y$ is the ground-truth mask cut out at the RoI. At test time the map of the
# predicted class is pasted back into the image at the detected box.
#
# **You will learn** the difference between semantic, instance and panoptic segmentation;
# how mask targets are made and pasted back; why the loss uses only the ground-truth class;
# and you will measure the lecture's claim that **RoI Align is crucial for masks**: the same
# model with RoI Pool in its mask branch, trained alike, loses mask AP. The model is
# `cvlib/models/mask_rcnn.py` (short: it plugs into `cvlib/models/rcnn.py`'s Faster R-CNN).

# %%
# Colab: fetch and install this repository (nothing happens elsewhere).
import os
import subprocess
import sys

REPOSITORY = "https://github.com/cvlib-course/cvlib"  # `make colab-url URL=...` sets it everywhere
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/cvlib"):
        if subprocess.run(["git", "clone", "-q", "--depth=1", REPOSITORY, "/content/cvlib"]).returncode:
            raise SystemExit(f"Could not clone {REPOSITORY}: check the URL and that the repository is public.")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/cvlib"], check=True)
    sys.path.insert(0, "/content/cvlib")

# %%
import matplotlib.pyplot as plt
import numpy as np
import skimage.measure
import torch
from matplotlib.collections import LineCollection
from torch.utils.data import DataLoader

from cvlib import metrics, ops, recipes, runtime, viz, weights, widgets
from cvlib.data import STUFF_CLASSES, ShapesDataset, collate_detection, held_out_detection
from cvlib.models.mask_rcnn import build_mask_rcnn, paste_masks, project_masks
from cvlib.models.panoptic import panoptic_from_semantic, panoptic_merge, panoptic_target
from cvlib.train import detect, fit, predict

device = runtime.start(seed=0)  # the device, one CPU thread, the seeds
names = ShapesDataset(1).classes
test_images, test_targets = held_out_detection(200)  # the held-out scenes (seed 1)

# %% [markdown]
# ## 1. Semantic, instance and panoptic segmentation
#
# The same scene three ways. **Semantic** segmentation labels every pixel with a class: two
# touching squares become one "square" region. **Instance** segmentation gives each object its
# own mask (and ignores the background). **Panoptic** segmentation does both: every pixel gets a
# class, and pixels of countable **things** also get an instance id, while amorphous **stuff**
# (here the textured background; grass, sky, road in real photos) gets a class only.

# %%
def shares_a_class(target):
    """Whether two objects of the scene have the same class, and it is not "square" (a square's
    mask is its box: it would show nothing a box does not)."""
    labels = target["labels"].tolist()
    return any(labels.count(c) > 1 for c in labels if names[c - 1] != "square")


scene = next(i for i, t in enumerate(test_targets) if shares_a_class(t))
image, target = test_images[scene], test_targets[scene]
panoptic = torch.zeros(64, 64, dtype=torch.int64)  # 0 = stuff (background), k = instance k
for k, mask in enumerate(target["masks"], start=1):
    panoptic[mask] = k
fig_tasks, axes_tasks = plt.subplots(1, 4, figsize=(9, 2.5))
viz.show_image(axes_tasks[0], image, "image")
viz.show_image(axes_tasks[1], viz.colorize_semantic(target["semantic"]), "semantic: a class per pixel")
viz.show_image(axes_tasks[2], viz.overlay_masks(image, target["masks"]), "instance: a mask per object")
viz.show_image(axes_tasks[3], panoptic, "panoptic: stuff + instance ids", cmap="tab10", vmin=0, vmax=9)
plt.tight_layout(rect=(0, 0, 1, 0.88))
viz.class_legend(fig_tasks, names, loc="upper center", ncol=4)
plt.show()
classes_present = target["semantic"].unique()
print(f"semantic: {len(classes_present) - 1} object classes; instance: {len(target['masks'])} objects "
      f"({', '.join(names[label - 1] for label in target['labels'])})")


def semantic_count(semantic):
    """Objects counted from a semantic map alone: connected regions of each class."""
    return sum(skimage.measure.label((semantic == c).numpy(), connectivity=1).max() for c in semantic.unique()[1:])


miscounted = sum(semantic_count(t["semantic"]) != len(t["labels"]) for t in test_targets)
print(f"held-out scenes where counting the semantic map's regions gives the wrong number of objects: "
      f"{miscounted} of {len(test_targets)}")
assert miscounted > 0.02 * len(test_targets)  # touching objects of one class merge: instances are needed

# %% [markdown]
# **Keypoints.** Mask R-CNN's recipe extends to human pose: a keypoint head predicts, per RoI,
# one $56 \times 56$ map per keypoint (left shoulder, right knee, ...) trained with a softmax over
# the pixels, so that each map has one hot spot. The figure marks four extreme pixels of each
# shape (leftmost, rightmost, top, bottom); section 7 trains such a head on the shapes' own
# keypoints, their vertices and corners.

# %%
fig_kp, ax_kp = plt.subplots(figsize=(6.4, 6.4))
viz.show_image(ax_kp, image, "4 'keypoints' per object")
viz.draw_boxes(ax_kp, target["boxes"], target["labels"], linewidth=1)
for mask in target["masks"]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    extremes = torch.stack([xs.argmin(), xs.argmax(), ys.argmin(), ys.argmax()])
    ax_kp.scatter(xs[extremes], ys[extremes], s=18, c=["red", "yellow", "cyan", "lime"], edgecolors="black")
plt.show()

# %% [markdown]
# ## 2. Mask targets and pasting
#
# The mask head never sees the whole image: it predicts an $M \times M$ mask **relative to a
# RoI**. Its training target is the matched object's ground-truth mask cut out at the RoI and
# resampled to $28 \times 28$ with RoI Align (`project_masks`); at test time the predicted
# $28 \times 28$ probabilities are resampled back into the box (`paste_masks`). Sampling at pixel
# centres (`aligned=True`) makes the round trip exact; torchvision's `project_masks_on_boxes`
# samples half a pixel off (`aligned=False`), which costs small objects much of their IoU.

# %%
boxes = target["boxes"]
cut = project_masks(target["masks"], boxes, torch.arange(len(boxes)))  # [N, 28, 28]
fig_cut, axes_cut = plt.subplots(1, 1 + len(boxes), figsize=(2.3 * (1 + len(boxes)), 2.3))
viz.show_image(axes_cut[0], image, "RoIs (gt boxes)")
viz.draw_boxes(axes_cut[0], boxes, target["labels"], linewidth=1)
for ax, mask, label in zip(axes_cut[1:], cut, target["labels"]):
    viz.show_image(ax, mask, f"28x28 target ({names[label - 1]})", cmap="gray", vmin=0, vmax=1)
plt.tight_layout()
plt.show()


def round_trip_iou(aligned):
    """IoU of every object of 50 scenes with its mask cut out at its box and pasted back."""
    ious = []
    for t in test_targets[:50]:
        back = paste_masks(project_masks(t["masks"], t["boxes"], torch.arange(len(t["boxes"])), aligned=aligned),
                           t["boxes"], (64, 64))[:, 0] > 0.5
        ious.append(metrics.mask_iou(back, t["masks"]).diagonal())
    return torch.cat(ious)


exact, legacy = round_trip_iou(True), round_trip_iou(False)
print(f"cut out and pasted back, IoU with the original: aligned min {exact.min():.3f}; "
      f"half a pixel off (torchvision's targets) mean {legacy.mean():.3f}, min {legacy.min():.3f}")
assert exact.min() == 1.0 and legacy.min() < 0.85

# %% [markdown]
# ## 3. The mask head, and why the loss uses only the ground-truth class
#
# The head is a small FCN: two $3 \times 3$ convolutions on the $14 \times 14$ RoI feature, a
# $2\times$ transposed convolution to $28 \times 28$, and a $1 \times 1$ convolution to one logit
# map per class. Each class's map is an independent **sigmoid** mask, and only the
# ground-truth class's map gets a gradient: the classes do not compete for a pixel (as they
# would with a per-pixel softmax over classes), the box branch's classifier decides the class,
# and the mask head only has to answer "which pixels of this box belong to the object,
# *if* it is class $k$". Below, the three class maps of one RoI of the trained model, and how well
# each class's map, pasted at the ground-truth boxes, covers the object.

# %%
mask_rcnn = recipes.load_model("mask_rcnn", device=device)
head = mask_rcnn.roi_heads
print(head.mask_head)
print(f"mask head parameters: {sum(p.numel() for p in head.mask_head.parameters()):,}")
features = mask_rcnn.backbone(image[None].to(device))
with torch.no_grad():
    class_maps = head.mask_logits(features, [boxes.to(device)]).sigmoid().cpu()  # [N, C + 1, 28, 28]
print(f"pooled RoI features {tuple(head.mask_roi_pool(features, [boxes.to(device)]).shape)} -> "
      f"mask logits {tuple(class_maps.shape)}")

fig_cls, axes_cls = plt.subplots(1, 4, figsize=(8, 2.2))
first = 0
viz.show_image(axes_cls[0], cut[first], f"target ({names[target['labels'][first] - 1]})", cmap="gray")
for c, ax in enumerate(axes_cls[1:], start=1):
    probability = viz.show_image(ax, class_maps[first, c], f"'{names[c - 1]}' map", cmap="gray", vmin=0, vmax=1)
fig_cls.colorbar(probability, ax=axes_cls, shrink=0.8, label="mask probability")
plt.show()


def class_map_ious(model, images, targets):
    """Mask IoU of every object with each class's map of ``model``'s mask head, pasted at the
    object's ground-truth box: ``[objects, C]``, and the objects' labels ``[objects]``."""
    ious = []
    for img, t in zip(images, targets):
        with torch.no_grad():
            feats = model.backbone(img[None].to(device))
            maps = model.roi_heads.mask_logits(feats, [t["boxes"].to(device)])[:, 1:].sigmoid().cpu()
        for k, mask in enumerate(t["masks"]):
            pasted = paste_masks(maps[k], t["boxes"][k].expand(len(names), 4), (64, 64))[:, 0] > 0.5
            ious.append(metrics.mask_iou(pasted, mask[None])[:, 0])
    return torch.stack(ious), torch.cat([t["labels"] for t in targets])


ious, labels = class_map_ious(mask_rcnn, test_images[:50], test_targets[:50])
own = ious[torch.arange(len(labels)), labels - 1]
other = ious[torch.arange(len(names))[None] != (labels - 1)[:, None]]
print(f"gt boxes of 50 scenes: mask IoU with the map of the object's own class {own.mean():.3f}, "
      f"with the maps of the other classes {other.mean():.3f}")
assert own.mean() > other.mean() and other.mean() > 0.7

# %% [markdown]
# The own-class map is the best, but the other maps are nearly as good: with the class left to
# the box branch, the mask head has learned mostly "object vs background in this box", whatever
# the class. He et al. saw the same on COCO: a class-agnostic mask head (one map for all
# classes) lost only 0.6 AP, while a per-pixel softmax over classes, where classes compete for
# each pixel, lost 5.5 AP; section 5 measures that here.

# %% [markdown]
# ## 4. Training: five losses
#
# Mask R-CNN trains the RPN, the box head and the mask head together. The shipped model
# (`python -m cvlib.train mask_rcnn`) starts from the shipped Faster R-CNN and trains all five
# losses for 600 more steps; a few steps here show the mask loss falling from its untrained
# value ($\log 2 \approx 0.69$: every pixel at probability 0.5). Set `TRAIN_FROM_SCRATCH = True`
# to rerun the whole recipe (several minutes).

# %%
TRAIN_FROM_SCRATCH = False
if TRAIN_FROM_SCRATCH:
    from cvlib import recipes

    recipes.run("mask_rcnn", device)
    mask_rcnn = recipes.load_model("mask_rcnn", device=device)

short = build_mask_rcnn(num_classes=3, width=8)
short.load_state_dict(weights.load("faster_rcnn")["state_dict"], strict=False)  # box branch trained
short_loader = DataLoader(ShapesDataset(400, seed=0), batch_size=8, shuffle=True, collate_fn=collate_detection)
history = fit(short, short_loader, max_steps=25, lr=1e-3, device=device, progress=False)
fig_loss, ax_loss = plt.subplots(figsize=(6.6, 2.8))
for name in ["loss_classifier", "loss_box_reg", "loss_mask"]:
    ax_loss.plot(history["step"], history[name], label=name)
ax_loss.set(xlabel="step", title="25 steps from Faster R-CNN's weights")
ax_loss.legend(fontsize=8)
plt.show()
first, last = np.mean(history["loss_mask"][:3]), np.mean(history["loss_mask"][-3:])
print(f"loss_mask {first:.3f} -> {last:.3f}")
assert last < 0.8 * first


# %% [markdown]
# ## 5. The claims: RoI Align, and one sigmoid per class
#
# Three shipped models differ in one choice each, and were trained alike (the same Faster R-CNN
# to start from, the same 600 steps, the same seed):
#
# - `mask_rcnn`: the paper's design, **RoI Align** for the mask branch and a **sigmoid per
#   class** with the loss on the ground-truth class only.
# - `mask_rcnn_roipool`: **RoI Pool** for the mask branch, which rounds the box and its bins to
#   the feature grid. Here the grid has a stride of 8 pixels, so a rounded box can be off by
#   several pixels, and so can its mask.
# - `mask_rcnn_softmax`: a **per-pixel softmax over the classes** (and background) as the mask
#   loss, so that classes compete for every pixel (`softmax_mask_loss`).
#
# The box branches use RoI Align in all three and stay comparable. Mask AP is COCO's AP with mask
# IoU instead of box IoU (`evaluate_detections(..., iou_type="segm")`, equal to pycocotools).

# %%
models = {"RoI Align": mask_rcnn, "RoI Pool": recipes.load_model("mask_rcnn_roipool", device=device),
          "softmax": recipes.load_model("mask_rcnn_softmax", device=device)}
detections = {name: detect(m, test_images) for name, m in models.items()}
results = {}
for name, dets in detections.items():
    box = metrics.evaluate_detections(dets, test_targets)
    mask = metrics.evaluate_detections(dets, test_targets, iou_type="segm")
    results[name] = {"box AP50": box["map_50"], "box mAP": box["map"], "mask AP50": mask["map_50"],
                     "mask AP75": mask["map_75"], "mask mAP": mask["map"]}
    print(f"{name:9s} " + ", ".join(f"{k} {v:.3f}" for k, v in results[name].items()))

fig_claim, ax_claim = plt.subplots(figsize=(7, 2.6))
keys = list(results["RoI Align"])
for offset, name in zip([-0.27, 0, 0.27], results):
    ax_claim.bar(np.arange(len(keys)) + offset, [results[name][k] for k in keys], width=0.27, label=name)
ax_claim.set(xticks=np.arange(len(keys)), xticklabels=keys, ylim=(0, 1), ylabel="AP", title="200 held-out scenes")
ax_claim.legend(fontsize=8, loc="lower left")
plt.show()
assert results["RoI Align"]["mask AP50"] >= 0.9  # masks good enough at IoU 0.5 for nearly every object
assert results["RoI Align"]["mask mAP"] > results["RoI Pool"]["mask mAP"]
assert results["RoI Align"]["mask AP75"] > results["RoI Pool"]["mask AP75"] + 0.05
assert results["RoI Align"]["mask mAP"] > results["softmax"]["mask mAP"] + 0.01

# %% [markdown]
# The per-class sigmoid beats the softmax at every threshold: letting the classes compete for
# each pixel makes the mask head do the classifier's job as well (He et al. measured 5.5 AP on
# COCO). RoI Pool against RoI Align: at IoU 0.5 both mask branches are good enough; the gap
# opens at the strict thresholds (AP75, and the mean over 0.50:0.95), where a boundary a few
# pixels off no longer counts. The box APs are close, so the gap is the masks' own. The cleanest
# comparison takes detection out of it: each model's mask of the ground-truth class, pasted at
# the ground-truth boxes.

# %%
pool_ious, _ = class_map_ious(models["RoI Pool"], test_images[:50], test_targets[:50])
pool_own = pool_ious[torch.arange(len(labels)), labels - 1]  # `own`: the RoI Align model's, section 3
print(f"mask IoU at the gt boxes of 50 scenes: RoI Align {own.mean():.3f}, RoI Pool {pool_own.mean():.3f}; "
      f"RoI Align better for {(own > pool_own).float().mean():.0%} of the objects")
assert own.mean() > pool_own.mean() + 0.02

# %% [markdown]
# Where the difference lives: the boundary. The same object, its ground-truth outline (white)
# and the mask each model pastes at its best-matching detection.

# %%
def best_mask(dets, box):
    """The pasted mask of the detection whose box overlaps ``box`` most."""
    k = ops.box_iou(dets["boxes"], box[None])[:, 0].argmax()
    return dets["masks"][k, 0] > 0.5


fig_edge, axes_edge = plt.subplots(1, 3, figsize=(7, 2.5))
curved = [(k, j) for k, t in enumerate(test_targets) for j, label in enumerate(t["labels"].tolist())
          if names[label - 1] != "square"][:3]  # circles and triangles: a square's mask is its box
for ax, (k, j) in zip(axes_edge, curved):
    t = test_targets[k]
    x1, y1, x2, y2 = t["boxes"][j].int().tolist()
    window = (slice(max(y1 - 4, 0), y2 + 4), slice(max(x1 - 4, 0), x2 + 4))
    rgb = viz.to_numpy_image(test_images[k])[window].copy()
    align, pool = (best_mask(detections[n][k], t["boxes"][j])[window].numpy() for n in ["RoI Align", "RoI Pool"])
    rgb[align & ~pool] = (0.1, 0.5, 1.0)  # only RoI Align
    rgb[pool & ~align] = (1.0, 0.3, 0.1)  # only RoI Pool
    rgb[align & pool] = 0.5 * rgb[align & pool] + 0.5 * np.array([0.2, 0.9, 0.2])
    gt = t["masks"][j][window].numpy()
    viz.show_image(ax, rgb, f"scene {k}: {names[t['labels'][j] - 1]}")
    ax.contour(gt, levels=[0.5], colors="white", linewidths=1)
fig_edge.suptitle("green: both masks, blue: RoI Align only, red: RoI Pool only, white: ground truth", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Explorer: from a detection to its mask
#
# Pick a scene and one of its detections: the box with the $14 \times 14$ RoI Align grid the
# mask head reads, the $28 \times 28$ mask of the predicted class, and that mask pasted into
# the image and cut at the mask threshold. The last panel shows every detection above the score
# threshold with its mask.

# %%
explore_dets = detections["RoI Align"][:20]
fig_mask, axes_mask = plt.subplots(1, 4, figsize=(10, 2.5), gridspec_kw={"wspace": 0.45})
image_artist = viz.show_image(axes_mask[0], test_images[0])
grid_lines = axes_mask[0].add_collection(LineCollection([], colors="black", linewidths=0.4, alpha=0.7))
mask_artist = viz.show_image(axes_mask[1], np.zeros((28, 28)), cmap="viridis", vmin=0, vmax=1)
fig_mask.colorbar(mask_artist, ax=axes_mask[1], shrink=0.8, label="probability")
pasted_artist = viz.show_image(axes_mask[2], test_images[0])
all_artist = viz.show_image(axes_mask[3], test_images[0])
box_artists = []


def roi_grid(box, bins=14):
    """Line segments of the ``bins x bins`` RoI Align grid over ``box`` (pixel coordinates)."""
    x1, y1, x2, y2 = (box - 0.5).tolist()  # drawn as in viz.draw_boxes: pixel k spans k - 0.5..k + 0.5
    xs, ys = np.linspace(x1, x2, bins + 1), np.linspace(y1, y2, bins + 1)
    return [[(x, y1), (x, y2)] for x in xs] + [[(x1, y), (x2, y)] for y in ys]


def show_mask(scene, detection, score_threshold, mask_threshold):
    for artist in box_artists:
        artist.remove()
    box_artists.clear()
    dets, img = explore_dets[scene], test_images[scene]
    keep = torch.nonzero(dets["scores"] >= score_threshold).flatten()
    image_artist.set_data(viz.to_numpy_image(img))
    all_artist.set_data(viz.overlay_masks(img, dets["masks"][keep] > mask_threshold, dets["labels"][keep]))
    axes_mask[3].set_title(f"{len(keep)} detections >= {score_threshold:.2f}", fontsize=8)
    if len(keep) == 0:
        grid_lines.set_segments([])
        mask_artist.set_data(np.zeros((28, 28)))
        pasted_artist.set_data(viz.to_numpy_image(img))
        for ax in axes_mask[:3]:
            ax.set_title("no detection", fontsize=8)
        return
    k = keep[min(detection, len(keep) - 1)]
    box, label = dets["boxes"][k], int(dets["labels"][k])
    grid_lines.set_segments(roi_grid(box))
    box_artists.extend(viz.draw_boxes(axes_mask[0], box[None], [label], [dets["scores"][k]], names, linewidth=1))
    with torch.no_grad():
        feats = mask_rcnn.backbone(img[None].to(device))
        small = head.mask_logits(feats, [box[None].to(device)])[0, label].sigmoid().cpu()
    mask_artist.set_data(small.numpy())
    pasted = dets["masks"][k : k + 1] > mask_threshold
    pasted_artist.set_data(viz.overlay_masks(img, pasted, [label]))
    shown = "" if detection < len(keep) else f" (only {len(keep)}: the last)"
    axes_mask[0].set_title(f"detection {detection + 1}{shown}: 14x14 grid", fontsize=8)
    axes_mask[1].set_title(f"28x28 mask: {names[label - 1]}", fontsize=8)
    axes_mask[2].set_title(f"pasted, > {mask_threshold:.2f}: {int(pasted.sum())} px", fontsize=8)


_ = widgets.explore(
    fig_mask, show_mask,
    scene=widgets.int_slider("scene", 0, len(explore_dets) - 1, 0),
    detection=widgets.int_slider("detection", 0, 4, 0),
    score_threshold=widgets.slider("score threshold", 0.05, 1.0, 0.5),
    mask_threshold=widgets.slider("mask threshold", 0.05, 0.95, 0.5),
)

# %% [markdown]
# ## On real photographs
#
# torchvision's **Mask R-CNN** (ResNet-50 + FPN, trained on COCO: a 169.8 MB download via
# `cvlib.pretrained`) on scikit-image's photos. To keep a CPU quick it runs at 320 px (its
# default is 800) and keeps its 10 best detections, with its own score threshold set to 0 so
# that the figure's threshold decides. `trace_rcnn` keeps its tensors: cvlib's RoI Align on
# the FPN levels `cvlib.ops.roi.roi_levels` picks equals the $14 \times 14$ features its mask
# head read (for any
# weights); one detection's $28 \times 28$ mask is pasted back into the photo with cvlib's
# `paste_masks` and compared with the model's own pasting. Offline, one line says why the
# section is skipped.

# %%
from cvlib import pretrained
from cvlib.data import photos

mask_model, mask_genuine, _ = pretrained.load("maskrcnn_resnet50_fpn")
if mask_model is not None:
    mask_model.to(device)
    mask_model.transform.min_size, mask_model.transform.max_size = (320,), 512
    mask_model.roi_heads.score_thresh, mask_model.roi_heads.detections_per_img = 0.0, 10
    coco_names = photos.category_names()
    street = photos.load("motorcycle_left", max_side=320)
    mask_trace = pretrained.trace_rcnn(mask_model, street.to(device))
    ours = pretrained.multiscale_roi_align(mask_model.roi_heads.mask_roi_pool, mask_trace["features"],
                                           mask_trace["mask_boxes"])
    mask_gap = (ours - mask_trace["mask_features"]).abs().max().item()
    print(f"mask head input: {tuple(ours.shape)}; max |cvlib RoI Align - model| = {mask_gap:.1e}")
    assert mask_gap < 1e-4
    found = {k: v.cpu() for k, v in mask_trace["detections"].items()}
    top = 0  # the best detection
    label = int(found["labels"][top])
    small = mask_trace["mask_logits"][top, label].sigmoid().cpu()  # [28, 28]
    pasted = paste_masks(small[None], found["boxes"][top : top + 1], street.shape[1:])[0, 0]
    theirs = found["masks"][top, 0]
    overlap = ((pasted > 0.5) & (theirs > 0.5)).sum() / ((pasted > 0.5) | (theirs > 0.5)).sum().clamp(min=1)
    print(f"best detection: {coco_names[label - 1]} {found['scores'][top]:.2f}; "
          f"IoU of cvlib's pasting with the model's (mask > 0.5): {overlap:.3f}")
    if mask_genuine:
        assert coco_names[label - 1] == "motorcycle" and found["scores"][top] > 0.9 and overlap > 0.8
    else:
        print("weights not genuine: 'motorcycle, score > 0.9, pastings agree' is not asserted")
    keep = found["scores"] >= 0.5
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.4), dpi=100, gridspec_kw={"width_ratios": [1.5, 0.7, 1.5, 1.5]})
    viz.show_image(axes[0], street, "best detection")
    viz.draw_boxes(axes[0], found["boxes"][top : top + 1], [label], found["scores"][top : top + 1], coco_names)
    fig.colorbar(viz.show_image(axes[1], small, "its 28x28 mask", cmap="viridis", vmin=0, vmax=1), ax=axes[1],
                 shrink=0.8, label="probability")
    viz.show_image(axes[2], viz.overlay_masks(street, pasted[None] > 0.5, [label]), "pasted back by cvlib")
    viz.show_image(axes[3], viz.overlay_masks(street, found["masks"][keep] > 0.5, found["labels"][keep]),
                   f"{int(keep.sum())} masks with score >= 0.5")
    plt.show()

# %% [markdown]
# ## 7. Keypoints: one more head
#
# A **keypoint** is a landmark of an object: a person's left shoulder or right knee, here a
# shape's corners. Mask R-CNN extends to them with one more per-RoI head (He et al. 2017, section
# 5): for each of the $K$ keypoints it predicts a $56 \times 56$ map over the RoI, whose target
# is **one hot cell**, the cell holding the keypoint. A **softmax over the $56^2$ positions** of
# the map makes the cells compete, so each map learns a single peak:
#
# $$L_{kp} = -\frac{1}{|V|} \sum_{(r, k) \in V} \log \frac{\exp h^{rk}_{c_{rk}}}{\sum_{j=1}^{56^2} \exp h^{rk}_j},$$
#
# with $h^{rk}$ the map of keypoint $k$ in RoI $r$, $c_{rk}$ its target cell and $V$ the labelled
# keypoints inside their RoIs (a mask head, instead, scores every pixel on its own with a
# sigmoid). At test time each map's most likely cell, mapped back through the box, is the
# keypoint. `cvlib/models/keypoint_rcnn.py` adds this head to the Mask R-CNN above.
#
# Each shape has natural keypoints: a triangle its 3 vertices (clockwise from the topmost), a
# square its 4 corners (clockwise from the top-left), a circle its centre and its top, right,
# bottom and left points. With $K = 5$ slots, a square leaves the fifth unlabelled and a triangle
# the last two (COCO's visibility 0); a keypoint under a later shape is labelled but hidden
# (visibility 1), like a person's occluded knee. `ShapesDataset(..., keypoints=True)` adds them
# to the targets as `keypoints` $[N, 5, 3]$ (x, y, visibility), the layout of torchvision's
# Keypoint R-CNN; nothing else in the scenes changes.

# %%
from matplotlib import patheffects

from cvlib.data import held_out_detection
from cvlib.data.shapes import KEYPOINT_NAMES, KEYPOINT_SIGMAS, NUM_KEYPOINTS
from cvlib.models.keypoint_rcnn import heatmaps_to_keypoints

kp_images, kp_targets = held_out_detection(200, keypoints=True)  # the same held-out scenes, with keypoints
slot_colors = plt.cm.tab10(np.arange(NUM_KEYPOINTS))
slot_names = [" / ".join(KEYPOINT_NAMES[c][k] for c in names if k < len(KEYPOINT_NAMES[c])) for k in range(5)]


def draw_keypoints(ax, keypoints, labels, predicted=False):
    """The labelled keypoints [N, 5, 3] of objects of classes ``labels``, coloured by slot: true
    ones as dots (hollow when hidden, visibility 1), ``predicted`` ones as crosses."""
    for points, label in zip(keypoints, labels):
        for k, (x, y, v) in enumerate(points[: len(KEYPOINT_NAMES[names[label - 1]])].tolist()):
            x, y = x - 0.5, y - 0.5  # imshow's pixel k spans k - 0.5..k + 0.5
            if predicted:  # a black outline keeps a cross visible on a dot of its own colour
                ax.scatter(x, y, s=30, marker="x", color=slot_colors[k], linewidths=1.5,
                           path_effects=[patheffects.withStroke(linewidth=3, foreground="black")])
            elif v > 0:
                ax.scatter(x, y, s=40, facecolors=slot_colors[k] if v == 2 else "none",
                           edgecolors="black" if v == 2 else slot_colors[k], linewidths=1)


fig_kps, axes_kps = plt.subplots(1, 4, figsize=(10, 3))
for ax, k in zip(axes_kps, range(4)):
    viz.show_image(ax, kp_images[k], f"held-out scene {k}")
    draw_keypoints(ax, kp_targets[k]["keypoints"], kp_targets[k]["labels"])
handles = [plt.Line2D([], [], marker="o", ls="", color=c, markeredgecolor="black", label=f"{k}: {n}")
           for k, (c, n) in enumerate(zip(slot_colors, slot_names))]
handles.append(plt.Line2D([], [], marker="o", ls="", markerfacecolor="none", color="gray", label="hidden (v = 1)"))
fig_kps.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
plt.tight_layout(rect=(0, 0.2, 1, 1))
plt.show()
visibility = torch.cat([t["keypoints"][..., 2].flatten() for t in kp_targets])
print(f"keypoint slots of the 200 held-out scenes: {int((visibility == 2).sum())} visible, "
      f"{int((visibility == 1).sum())} hidden, {int((visibility == 0).sum())} unlabelled")

# %% [markdown]
# The shipped `keypoint_rcnn` (`python -m cvlib.train keypoint_rcnn`) is the shipped `mask_rcnn`
# with the keypoint head added, trained with all six losses for 600 more steps of 8 scenes
# (`TRAIN_FROM_SCRATCH = True` in section 4 reruns it too). The head: four $3 \times 3$
# convolutions on the $14 \times 14$ RoI Align feature, a $2\times$ transposed convolution and a
# $2\times$ bilinear upsampling to five $56 \times 56$ maps, one per keypoint slot, shared by the
# classes (the classifier decides what slot 0 means, as torchvision's head does). Below, one
# detection's five maps as probabilities (the softmax over each map's positions) and the
# keypoints read off them.

# %%
if TRAIN_FROM_SCRATCH:
    recipes.run("keypoint_rcnn", device)
keypoint_rcnn = recipes.load_model("keypoint_rcnn", device=device)
kp_detections = detect(keypoint_rcnn, kp_images)
print(keypoint_rcnn.roi_heads.keypoint_head)

scene_kp = 1
kp_dets = kp_detections[scene_kp]
best = int(kp_dets["scores"].argmax())
kp_box, kp_label = kp_dets["boxes"][best], int(kp_dets["labels"][best])
with torch.no_grad():
    kp_feats = keypoint_rcnn.backbone(kp_images[scene_kp][None].to(device))
    kp_logits = keypoint_rcnn.roi_heads.heatmap_logits(kp_feats, [kp_box[None].to(device)]).cpu()  # [1, 5, S, S]
kp_probabilities = kp_logits.flatten(2).softmax(2).reshape(kp_logits.shape)[0]
kp_points = heatmaps_to_keypoints(kp_logits, kp_box[None])[0]  # [5, 3]: x, y, score
used = len(KEYPOINT_NAMES[names[kp_label - 1]])
fig_maps, axes_maps = plt.subplots(1, 1 + used, figsize=(2.2 * (1 + used) + 1, 2.6))
viz.show_image(axes_maps[0], kp_images[scene_kp], f"{names[kp_label - 1]} {kp_dets['scores'][best]:.2f}")
viz.draw_boxes(axes_maps[0], kp_box[None], [kp_label], class_names=names, linewidth=1)
draw_keypoints(axes_maps[0], kp_points[None], [kp_label], predicted=True)
for k, ax in enumerate(axes_maps[1:]):
    heat = viz.show_image(ax, kp_probabilities[k], f"{k}: {KEYPOINT_NAMES[names[kp_label - 1]][k]}",
                          cmap="magma", vmin=0, vmax=float(kp_probabilities[:used].max()))
    ax.set_title(ax.get_title() + f"\np = {kp_points[k, 2]:.2f}", fontsize=8)
fig_maps.colorbar(heat, ax=axes_maps[1:], shrink=0.8, label="probability of the cell")
fig_maps.suptitle("each 56 x 56 map covers the detected box; p: the probability of its best cell", fontsize=9)
plt.show()

# %% [markdown]
# **Predicted against true keypoints** on held-out scenes: every detection scoring at least 0.5,
# with the keypoint slots of its predicted class.

# %%
fig_pred, axes_pred = plt.subplots(1, 4, figsize=(10, 3))
for ax, k in zip(axes_pred, range(4, 8)):
    scene_dets, truth = kp_detections[k], kp_targets[k]
    confident = scene_dets["scores"] >= 0.5
    viz.show_image(ax, kp_images[k], f"held-out scene {k}: {int(confident.sum())} detections")
    draw_keypoints(ax, truth["keypoints"], truth["labels"])
    draw_keypoints(ax, scene_dets["keypoints"][confident], scene_dets["labels"][confident], predicted=True)
handles = [plt.Line2D([], [], marker="s", ls="", color=c, label=f"{k}: {n}")
           for k, (c, n) in enumerate(zip(slot_colors, slot_names))]
handles += [plt.Line2D([], [], marker="o", ls="", color="gray", markeredgecolor="black", label="true"),
            plt.Line2D([], [], marker="x", ls="", color="gray", label="predicted")]
fig_pred.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
plt.tight_layout(rect=(0, 0.2, 1, 1))
plt.show()

# %% [markdown]
# **Keypoint AP.** COCO scores keypoints with the **object keypoint similarity**, an IoU for
# keypoints:
#
# $$\text{OKS} = \frac{1}{|L|} \sum_{k \in L} \exp\Big(-\frac{d_k^2}{2 s^2 \kappa_k^2}\Big),
# \qquad \kappa_k = 2 \sigma_k,$$
#
# averaged over the labelled keypoints $L$ of the true object, with $d_k$ the distance between
# predicted and true keypoint, $s^2$ the object's area and $\sigma_k$ a per-keypoint tolerance
# (COCO measured how far apart human annotators click: 0.025 for an eye, 0.107 for a hip). Our
# keypoints are exact, so one $\sigma = 0.1$ for all (`KEYPOINT_SIGMAS`) sets how strict the score
# is: on a median shape ($s \approx 15$ px), OKS 0.5 allows 3.5 px, OKS 0.95 about 1 px. Keypoint
# AP is then COCO's AP with OKS in place of box IoU (`evaluate_detections(..., iou_type="keypoints",
# sigmas=KEYPOINT_SIGMAS)`, equal to pycocotools'; COCO keeps 20 detections per image).
#
# What does the head add over the box? A **baseline** without it puts each class's keypoints at
# their average place inside the box (measured on 300 training scenes: a square's corners at the
# box's corners, a circle's centre at the box's centre) in the same detected boxes.

# %%
baseline_detections = recipes.keypoint_baseline(kp_detections)


def keypoint_ap(detections, targets):
    """COCO keypoint AP (OKS with the shapes' sigmas, 20 detections per image): mAP and per class."""
    coco = metrics.evaluate_detections(detections, targets, "keypoints", max_detections=20, sigmas=KEYPOINT_SIGMAS)
    return {"mAP": coco["map"], **{names[c - 1]: ap for c, ap in coco["per_class"].items()}}


methods = {"keypoint head": kp_detections, "box baseline": baseline_detections}
kp_ap = {name: keypoint_ap(dets, kp_targets) for name, dets in methods.items()}
halves = {name: [keypoint_ap(dets[i : i + 100], kp_targets[i : i + 100]) for i in (0, 100)]
          for name, dets in methods.items()}
spread = {key: max(abs(a[key] - b[key]) for a, b in halves.values()) for key in kp_ap["box baseline"]}
for name, result in kp_ap.items():
    print(f"{name:13s} keypoint " + ", ".join(f"{key} {value:.3f}" for key, value in result.items()))
print("AP moves between the two halves of the scenes by up to " + ", ".join(f"{k} {v:.3f}" for k, v in spread.items()))

fig_kpap, ax_kpap = plt.subplots(figsize=(6.6, 2.8))
kp_keys = list(kp_ap["keypoint head"])
for offset, (name, result) in zip([-0.2, 0.2], kp_ap.items()):
    ax_kpap.bar(np.arange(len(kp_keys)) + offset, [result[k] for k in kp_keys], width=0.4, label=name,
                yerr=[spread[k] for k in kp_keys], capsize=3)
ax_kpap.set(xticks=np.arange(len(kp_keys)), xticklabels=kp_keys, ylim=(0, 1), ylabel="keypoint AP (OKS 0.5:0.95)",
            title="200 held-out scenes (bars: spread between halves)")
ax_kpap.legend(fontsize=8, loc="upper left")
plt.show()
with_head, box_only = kp_ap["keypoint head"], kp_ap["box baseline"]  # (`head` is the explorer's)
assert with_head["triangle"] > box_only["triangle"] + 3 * spread["triangle"]  # vertices turn: the box cannot say
assert with_head["mAP"] > box_only["mAP"] + spread["mAP"]
for fixed in ("square", "circle"):  # keypoints fixed in the box: the head adds nothing measurable
    assert with_head[fixed] - box_only[fixed] < spread[fixed]

# %% [markdown]
# The head's keypoints are better overall, and all of the gain is on **triangles**: a triangle's
# vertices turn with the shape, so its box says little about where they are (the baseline's
# triangle AP is near 0), while the head reads them off the RoI feature. On **squares and
# circles** the keypoints are fixed points of the box (a square's corners are its box's corners, a
# circle's extreme points the middles of its box's sides), the detector's boxes are precise, and
# the head, which must find each point again from a $14 \times 14$ feature of a stride-8 map, is
# no better than placing them by the box. The margins are measured: the triangle gap must exceed
# three times the spread between the two halves of the scenes (a rough measure of how much AP
# moves with the scenes drawn). Not shown: what more training or a larger head would give
# (600 steps, four 32-channel convolutions), and human poses, whose keypoints move far more
# freely inside the box than a triangle's vertices.

# %% [markdown]
# ## 8. Panoptic segmentation: stuff and things
#
# Real scenes have **stuff** besides things: sky, road, grass, regions without a count. Here the
# held-out scenes get two stuff classes (`ShapesDataset(..., stuff=True)`): sky above a wavy
# horizon, furrowed ground below it, behind the very objects of the scenes above. Two models
# make a panoptic segmentation together, as in Kirillov et al.'s baseline:
#
# - a **semantic** model for stuff (and things) per pixel: `unet_stuff`, section 03's U-Net
#   trained with its recipe and budget (500 steps of 32 scenes) on stuff scenes, 6 outputs;
# - an **instance** model for things: the shipped `mask_rcnn`, trained on the plain background
#   only (does it still work on sky and ground? measured first);
# - the **merge** (`cvlib.models.panoptic.panoptic_merge`): paste the instance masks by
#   descending score (score >= 0.5), drop an instance when more than half of it is already
#   taken, give the free pixels the semantic model's stuff class, drop stuff regions under 64
#   pixels; every other pixel is **void**.
#
# **Panoptic quality** (`cvlib.metrics.panoptic_quality`) matches predicted and true segments
# of a class at IoU > 0.5 (a match is then unique) and, per class,
#
# $$PQ = \frac{\sum_{TP} \mathrm{IoU}}{|TP| + \tfrac12 |FP| + \tfrac12 |FN|}
#      = \underbrace{\frac{\sum_{TP} \mathrm{IoU}}{|TP|}}_{SQ} \times
#        \underbrace{\frac{|TP|}{|TP| + \tfrac12 |FP| + \tfrac12 |FN|}}_{RQ},$$
#
# averaged over classes, over things and over stuff.

# %%
stuff_images, stuff_targets = held_out_detection(200, stuff=True)  # the objects of test_targets
stuff_names = names + STUFF_CLASSES
THINGS, STUFF = [1, 2, 3], [len(names) + 1, len(names) + 2]
stuff_detections = detect(models["RoI Align"], stuff_images)
stuff_mask_map = metrics.evaluate_detections(stuff_detections, stuff_targets, iou_type="segm")["map"]
drop = results["RoI Align"]["mask mAP"] - stuff_mask_map
pool_gap = results["RoI Align"]["mask mAP"] - results["RoI Pool"]["mask mAP"]
print(f"mask_rcnn, mask mAP on the 200 held-out scenes: plain background {results['RoI Align']['mask mAP']:.3f}, "
      f"sky and ground {stuff_mask_map:.3f} (drop {drop:.3f}; RoI Pool instead of RoI Align cost {pool_gap:.3f})")
assert drop < pool_gap  # the new background costs less than the design choice section 5 measured

with torch.random.fork_rng(devices=[]):  # building it draws initial weights: keep the seed stream
    semantic_model = recipes.load_model("unet_stuff", device=device)
stuff_semantic = predict(semantic_model, torch.stack(stuff_images), batch_size=50, device=device).argmax(1)
truth = [panoptic_target(t) for t in stuff_targets]
outputs = {"panoptic merge": [panoptic_merge(d, s, STUFF) for d, s in zip(stuff_detections, stuff_semantic)],
           "semantic only": [panoptic_from_semantic(s, THINGS) for s in stuff_semantic]}
quality = {name: metrics.panoptic_quality(p, truth, THINGS, STUFF) for name, p in outputs.items()}
for name, q in quality.items():
    print(f"{name:15s} " + "  ".join(f"{part} PQ {r['pq']:.3f} SQ {r['sq']:.3f} RQ {r['rq']:.3f}"
                                     for part, r in (("all", q), ("things", q["things"]), ("stuff", q["stuff"]))))
print("panoptic merge, per class:")
for c, row in quality["panoptic merge"]["per_class"].items():
    print(f"  {stuff_names[c - 1]:8s} PQ {row['pq']:.3f} = SQ {row['sq']:.3f} x RQ {row['rq']:.3f}   "
          f"TP {row['tp']:3d}  FP {row['fp']:2d}  FN {row['fn']:2d}")

# %%
fig_pan, axes_pan = plt.subplots(3, 4, figsize=(8.4, 6.6))
for row, k in enumerate((0, 3, 7)):
    merged = outputs["panoptic merge"][k]
    colours = viz.colorize_semantic(merged["classes"].clamp(min=0))  # void (-1): dark grey, as label 0
    edges = (merged["instances"] != merged["instances"].roll(1, 0)) | (merged["instances"] != merged["instances"].roll(1, 1))
    colours[(edges & (merged["instances"] > 0)).numpy()] = 1.0  # white: the outline of each instance
    keep = stuff_detections[k]["scores"] >= 0.5
    panels = [(stuff_images[k], "image"), (viz.colorize_semantic(stuff_semantic[k]), "semantic (unet_stuff)"),
              (viz.overlay_masks(stuff_images[k], stuff_detections[k]["masks"][keep, 0] > 0.5,
                                 stuff_detections[k]["labels"][keep]), "instances (mask_rcnn)"),
              (colours, "panoptic merge")]
    for ax, (panel, title) in zip(axes_pan[row], panels):
        viz.show_image(ax, panel, title if row == 0 else None)
fig_pan.tight_layout(rect=(0, 0, 1, 0.9))
viz.class_legend(fig_pan, stuff_names, background=False, loc="upper center", ncol=5)
fig_pan.suptitle("panoptic: white outlines separate instances; dark grey is void", fontsize=8, y=0.91)
plt.show()

# %% [markdown]
# Stuff is nearly perfect: sky and ground are large and their boundary is smooth. Things are
# harder, and the semantic model alone, each connected region of a thing class taken for one
# object, scores *higher* on them here than the merge: its full-resolution masks overlap the
# objects better (SQ) than Mask R-CNN's $28 \times 28$ masks pasted into a box, and in most
# scenes no two objects of one class touch. Where they do, the semantic map cannot count
# (section 1): on the held-out scenes where its regions miscount the objects, the instance
# model recognises more of them (RQ).

# %%
miscounted_scenes = [k for k, t in enumerate(test_targets) if semantic_count(t["semantic"]) != len(t["labels"])]
on_those = {name: metrics.panoptic_quality([p[k] for k in miscounted_scenes], [truth[k] for k in miscounted_scenes],
                                           THINGS, STUFF)["things"] for name, p in outputs.items()}
print(f"things on all 200 scenes: SQ merge {quality['panoptic merge']['things']['sq']:.3f}, "
      f"semantic only {quality['semantic only']['things']['sq']:.3f}")
print(f"things on the {len(miscounted_scenes)} scenes whose semantic regions miscount the objects: "
      + ", ".join(f"{name} PQ {r['pq']:.3f} RQ {r['rq']:.3f}" for name, r in on_those.items()))
assert quality["semantic only"]["things"]["sq"] > quality["panoptic merge"]["things"]["sq"]  # full-resolution masks
assert on_those["panoptic merge"]["rq"] > on_those["semantic only"]["rq"]  # instances separate what touches

# %% [markdown]
# What this does not show: a merge that beats its parts everywhere. With a semantic model this
# good at masks, a panoptic system would take the instance model's *detections* and the
# semantic model's *pixels*; Panoptic FPN shares one backbone between the two heads for that.

# %% [markdown]
# ## Summary
#
# - Semantic segmentation labels pixels by class; instance segmentation separates objects;
#   panoptic segmentation labels every pixel with a class and, for things, an instance.
# - Mask R-CNN = Faster R-CNN + a per-RoI FCN mask head: a $28 \times 28$ sigmoid mask per class,
#   trained with binary cross-entropy on the ground-truth class's map only, pasted into the box
#   at test time. Mask targets and pasting must agree on where a pixel is (`aligned=True`).
# - Measured above: RoI Align in the mask branch gives clearly higher mask AP than RoI Pool
#   after the same training; the gap grows with the IoU threshold, because quantisation moves
#   mask boundaries by pixels. A softmax over classes instead of one sigmoid per class also
#   costs mask AP.
# - Keypoints are one more head: one $56 \times 56$ map per keypoint, a softmax over its positions
#   against a one-hot target, decoded by the most likely cell. Scored by keypoint AP (OKS),
#   it beats keypoints placed by the box alone only where the box cannot tell: on the triangles,
#   whose vertices turn with the shape.
# - Panoptic segmentation from two models: instance masks pasted by score, stuff from a semantic
#   model, the rest void; PQ = SQ x RQ per class. Mask R-CNN kept its mask AP on sky and ground;
#   the semantic model alone has the better masks (SQ), the instances count touching objects (RQ).
#
# ## Exercises
#
# 1. Train a class-agnostic mask head (one map for every class: `MaskHead(..., num_classes=0)`
#    and index map 0) for the same 600 steps. How does its mask AP compare with the three above?
# 2. The mask head pools $14 \times 14$ from a stride-8 feature map. Give it `mask_pool_size=7`:
#    how much mask AP75 is lost?
# 3. In the explorer, move the mask threshold from 0.5 to 0.2 and 0.8. Which objects grow or
#    shrink most, and why do thin triangle tips disappear first?
# 4. Train `mask_rcnn` with `project_masks(..., aligned=False)` (torchvision's targets): by how much
#    does mask AP75 drop?
# 5. Halve `KEYPOINT_SIGMAS` (0.05) and measure keypoint AP again. Which class loses most, and why
#    (what is $s$ in the OKS for a small triangle)?
# 6. A triangle's keypoint 0 is its topmost vertex. What happens to the order when the triangle
#    turns past the angle where two vertices are equally high, and what does that do to the
#    head's maps and to its triangle AP? Propose an order without that jump.

# %% [markdown]
# ## Your turn: implement it
#
# Write Mask R-CNN's mask branch yourself: `mask_loss` (per-class sigmoid on the ground-truth
# class's map) and `roi_align` (no rounding, bilinear samples). Each function has cvlib's
# signature and docstring; `check(name, fn)` runs it against cvlib's version on hand-picked edge
# cases (empty inputs, ties, thresholds at the boundary, non-contiguous tensors) and on seeded
# random cases, gradients included where the function is trained through. It prints `NAME: N
# cases passed`, or raises an `AssertionError` with the smallest failing input, the expected and
# the actual output and, when it recognises one, the classic mistake. A function that still
# raises `NotImplementedError` gets `NAME: not implemented yet`.
#
# In `notebooks/08_mask_rcnn.ipynb` the solutions are filled in; `assignments/08_mask_rcnn.ipynb`
# (written by `make assignments`) has a stub in their place. Nothing above uses these cells.

# %%
import math

import torch
import torch.nn.functional as F

from cvlib.exercises import check


# %% nbgrader={"grade": false, "grade_id": "mask_loss", "locked": false, "schema_version": 3, "solution": true}
def mask_loss(mask_logits, labels, mask_targets):
    """Mask R-CNN's mask loss: the mean per-pixel binary cross-entropy between each RoI's
    logit map of its ground-truth class and its target. ``mask_logits [K, C + 1, M, M]``
    (map 0 is the background), ``labels [K]`` in ``1..C``, ``mask_targets [K, M, M]`` in
    ``[0, 1]`` -> a scalar; 0 (still connected to the graph) when ``K == 0``."""
    ### BEGIN SOLUTION
    if len(labels) == 0:
        return mask_logits.sum() * 0
    own_class = mask_logits[torch.arange(len(labels)), labels]  # [K, M, M]: one map per RoI
    return F.binary_cross_entropy_with_logits(own_class, mask_targets)
    ### END SOLUTION


# %%
check("mask_loss", mask_loss)


# %% nbgrader={"grade": false, "grade_id": "roi_align", "locked": false, "schema_version": 3, "solution": true}
def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoI Align of ``input [N, C, H, W]`` for ``boxes [K, 5]`` ``(batch index, x1, y1, x2, y2)``:
    ``[K, C, PH, PW]``. The box ``* spatial_scale`` (minus 0.5 when ``aligned``; at least
    1 x 1 when not) is cut into bins; each bin averages ``g_h x g_w`` bilinear samples at
    the centres of a regular sub-grid (``g = sampling_ratio``, or ``ceil(bin size)`` when
    ``sampling_ratio <= 0``); a sample more than one cell outside the map counts as 0."""
    ### BEGIN SOLUTION
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, channels, height, width = input.shape

    def sample(feature, y, x):  # bilinear interpolation of feature [C, H, W] at (y, x)
        if y < -1 or y > height or x < -1 or x > width:
            return feature.new_zeros(channels)
        y, x = min(max(y, 0.0), height - 1), min(max(x, 0.0), width - 1)
        y0, x0 = int(y), int(x)
        y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * feature[:, y0, x0] + (1 - ly) * lx * feature[:, y0, x1]
                + ly * (1 - lx) * feature[:, y1, x0] + ly * lx * feature[:, y1, x1])

    out = input.new_zeros(len(boxes), channels, ph, pw)
    offset = 0.5 if aligned else 0.0
    for k, (b, *corners) in enumerate(boxes.tolist()):
        x1, y1, x2, y2 = (c * spatial_scale - offset for c in corners)
        roi_w, roi_h = (x2 - x1, y2 - y1) if aligned else (max(x2 - x1, 1.0), max(y2 - y1, 1.0))
        bin_h, bin_w = roi_h / ph, roi_w / pw
        g_h = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_h)
        g_w = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_w)
        for p in range(ph):
            for q in range(pw):
                points = [sample(input[int(b)], y1 + p * bin_h + (i + 0.5) * bin_h / g_h,
                                 x1 + q * bin_w + (j + 0.5) * bin_w / g_w)
                          for i in range(g_h) for j in range(g_w)]
                if points:
                    out[k, :, p, q] = torch.stack(points).mean(dim=0)
    return out
    ### END SOLUTION


# %%
check("roi_align", roi_align)
