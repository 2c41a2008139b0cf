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
# # 04 · Detection basics: one object, many objects, IoU, NMS and AP
#
# **Single-object detection** is classification plus localization: one network, two heads,
# class scores and four box numbers, trained with a **multitask loss**
#
# $$L = \underbrace{-\log p_{y}}_{\text{softmax cross-entropy}} \;+\; \lambda\,
# \underbrace{\textstyle\sum_{i} \mathrm{smooth}_{L_1}(t_i - \hat t_i)}_{\text{box regression}}$$
#
# where $\lambda$ balances the two tasks. With **many objects** the number of outputs varies
# from image to image, so a fixed-size output no longer works; classifying every window
# (sliding window) is correct but far too expensive. Detectors instead output many scored
# boxes and clean them up with **non-maximum suppression**; they are evaluated by matching
# their boxes to the ground truth by **intersection over union** and summarising the
# precision-recall curve as **average precision** (AP).
#
# **You will learn** the multitask loss and what $\lambda$ does (measured), IoU, NMS step by
# step (equal to torchvision), precision-recall and the three AP interpolations (VOC 11-point,
# all-point, COCO 101-point), and COCO mAP, equal to `pycocotools` on the same detections.

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
import contextlib
import io
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader

from cvlib import metrics, ops, recipes, runtime, viz, weights, widgets
from cvlib.data import ShapesDataset, SingleObjectDataset, collate_single_object, to_coco
from cvlib.models.single import SingleObjectDetector, evaluate
from cvlib.train import detect, fit, seconds_per_call

device = runtime.start(seed=0)  # the device, one CPU thread, the seeds
names = ShapesDataset(1).classes

# %% [markdown]
# ## 1. One object: classification + localization
#
# `SingleObjectDetector` (in `cvlib/models/single.py`) runs a CNN over the image and flattens
# its last feature map (flattening keeps *where* the object is; global average pooling would
# lose it) into two heads: class scores and $(c_x, c_y, w, h)$ divided by the image size,
# squashed into $[0, 1]$ by a sigmoid. It was trained once with
# `python -m cvlib.train single_object` (multitask loss, $\lambda = 10$, smooth L1).

# %%
model = recipes.load_model("single_object", device=device)
print(weights.load("single_object")["meta"]["metrics"])
held_out = collate_single_object(list(SingleObjectDataset(500, seed=1)))
scores = evaluate(model, *held_out)
print({k: round(v, 3) for k, v in scores.items()})
assert scores["accuracy"] > 0.9 and scores["mean_iou"] > 0.6

# %%
images, targets = held_out
with torch.no_grad():
    out = model(images[:8].to(device))
iou = ops.box_iou(out["boxes"].cpu(), targets["boxes"][:8]).diagonal()
fig, axes = plt.subplots(1, 8, figsize=(12, 1.9))
for k, ax in enumerate(axes):
    label = out["logits"][k].argmax().item()
    viz.show_image(ax, images[k], f"{names[label]} IoU {iou[k]:.2f}")
    viz.draw_boxes(ax, targets["boxes"][k : k + 1], color="white", linestyle="--")
    viz.draw_boxes(ax, out["boxes"][k : k + 1].cpu(), [label + 1], class_names=names)
fig.suptitle("prediction (coloured) vs ground truth (dashed white)", fontsize=9)
plt.show()

# %% [markdown]
# ### What $\lambda$ does
#
# The two losses have different scales and share the same features. Three short runs (300
# steps, a few seconds each) from scratch on 32x32 scenes, identical except for $\lambda$:
# with $\lambda = 0$ the box head is never trained, so its IoU stays at the untrained guess;
# a larger $\lambda$ buys box quality.

# %%
def short_run(box_weight, steps=300):
    torch.manual_seed(0)
    net = SingleObjectDetector(num_classes=3, image_size=32, width=8)
    loader = DataLoader(SingleObjectDataset(2400, image_size=32, seed=0), batch_size=32,
                        shuffle=True, collate_fn=collate_single_object)
    history = fit(net, loader, loss_fn=partial(net.loss, box_weight=box_weight),
                  epochs=10, max_steps=steps, lr=2e-3, device=device)
    return history, evaluate(net, *collate_single_object(list(SingleObjectDataset(300, image_size=32, seed=1))))


runs = {w: short_run(w) for w in (0.0, 1.0, 10.0)}
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
for w, (history, result) in runs.items():
    axes[0].plot(history["loss_cls"], label=f"λ={w:g}")
    axes[1].plot(np.array(history["loss_box"]) / max(w, 1e-9) if w else [], label=f"λ={w:g}")
    print(f"λ = {w:4g}: accuracy {result['accuracy']:.3f}, mean IoU {result['mean_iou']:.3f}")
axes[0].set(title="classification loss", xlabel="step")
axes[1].set(title="box loss (unweighted)", xlabel="step")
axes[0].legend()
fig.tight_layout()
plt.show()
assert runs[10.0][1]["mean_iou"] > runs[0.0][1]["mean_iou"] + 0.2

# %% [markdown]
# Here the box loss does not hurt classification at all at this budget: learning *where* the
# object is shapes the shared features in a way that also helps to tell *what* it is. With
# other data, too large a $\lambda$ can drown the classification loss; watch both curves.

# %% [markdown]
# ## 2. Many objects: why a fixed output breaks
#
# A single-object network has exactly $C + 4$ outputs. A scene has any number of objects:

# %%
scenes = ShapesDataset(500, max_objects=6, min_objects=0, seed=2)
counts = np.bincount([len(scenes[i][1]["labels"]) for i in range(len(scenes))])
print("scenes with 0, 1, 2, ... objects:", counts.tolist())
assert (counts > 0).sum() >= 5  # at least five different numbers of outputs

# %% [markdown]
# **Sliding window** would classify every crop instead: every position, every size, every
# aspect ratio, each a full CNN pass. Count the windows, and time one pass of the small
# single-object network above per crop (batches of 256 crops, best of 3 after a warm-up):

# %%
def count_windows(image_size, sizes, ratios, stride):
    height, width = image_size
    total = 0
    for s in sizes:
        for r in ratios:
            h, w = round(s * r**0.5), round(s / r**0.5)
            total += max(0, (height - h) // stride + 1) * max(0, (width - w) // stride + 1)
    return total


small = count_windows((64, 64), sizes=(12, 16, 24, 32), ratios=(1,), stride=4)
photo = count_windows((600, 800), sizes=(32, 64, 128, 256, 512), ratios=(0.5, 1, 2), stride=8)
print(f"64x64 scene, 4 sizes, stride 4: {small:,} CNN passes; 800x600 photo, 5 sizes x 3 ratios, stride 8: {photo:,}")
crops = torch.rand(256, 3, 64, 64, device=device)
with torch.no_grad():
    per_crop = seconds_per_call(model, [crops], repeats=3, device=device) / len(crops)
print(f"one pass of the single-object network: {1000 * per_crop:.3f} ms per 64x64 crop on {device.type} "
      f"-> {photo * per_crop:.1f} s per photo by sliding window (real time: 0.03 s)")
if device.type == "cpu":  # a GPU is faster, the window count the same
    assert photo * per_crop > 1.0

# %% [markdown]
# ## 3. Intersection over union
#
# $$\mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|} \in [0, 1]$$
#
# A detection counts as correct when its IoU with an object is at least a threshold (0.5 for
# PASCAL VOC; COCO averages over 0.50, 0.55, ..., 0.95). Move box B:

# %%
box_a = torch.tensor([[20.0, 20.0, 44.0, 44.0]])
fig_iou, ax_iou = plt.subplots(figsize=(4.2, 4.2))
ax_iou.set(xlim=(0, 64), ylim=(64, 0), aspect="equal")
ax_iou.add_patch(plt.Rectangle((20, 20), 24, 24, fill=False, color="tab:blue", lw=2))
rect_b = ax_iou.add_patch(plt.Rectangle((0, 0), 1, 1, fill=False, color="tab:orange", lw=2))
overlap = ax_iou.add_patch(plt.Rectangle((0, 0), 0, 0, color="tab:green", alpha=0.4))


def show_iou(x, y, size):
    box_b = torch.tensor([[x, y, x + size, y + size]], dtype=torch.float32)
    rect_b.set_bounds(x, y, size, size)
    x1, y1 = max(20, x), max(20, y)
    x2, y2 = min(44, x + size), min(44, y + size)
    overlap.set_bounds(x1, y1, max(0, x2 - x1), max(0, y2 - y1))
    ax_iou.set_title(f"IoU = {ops.box_iou(box_a, box_b).item():.3f}", fontsize=10)


_ = widgets.explore(fig_iou, show_iou, x=widgets.int_slider("B: x", 0, 50, 28),
                    y=widgets.int_slider("B: y", 0, 50, 26), size=widgets.int_slider("B: size", 4, 40, 24))

# %%
random_boxes = torch.rand(200, 2) * 50
random_boxes = torch.cat([random_boxes, random_boxes + 1 + torch.rand(200, 2) * 30], 1)
torch.testing.assert_close(ops.box_iou(random_boxes, random_boxes),
                           torchvision.ops.box_iou(random_boxes, random_boxes))
print("cvlib.ops.box_iou equals torchvision.ops.box_iou on 200 x 200 random pairs")

# %% [markdown]
# ## 4. Non-maximum suppression
#
# A detector fires many times around each object. NMS keeps the best-scoring box, removes
# every box that overlaps it by more than a threshold, and repeats with the best box left:
#
# 1. sort boxes by score; 2. take the first, keep it; 3. drop all boxes with IoU > threshold
# with it; 4. repeat until no box is left.
#
# Here is a crowded set of detections: around every object, eight jittered boxes with scores
# that fall with their error, plus random false alarms.

# %%
def simulated_detections(target, generator, copies=8, false_alarms=4, jitter=0.12):
    """Noisy detections of a scene: jittered copies of each true box, random false alarms."""
    boxes, scores, labels = [], [], []
    for box, label in zip(target["boxes"], target["labels"]):
        size = (box[2:] - box[:2]).repeat(2)
        noise = torch.randn(copies, 4, generator=generator) * jitter
        boxes.append(box + noise * size)
        scores.append((1 - noise.abs().mean(1) * 3).clamp(0.05, 1))
        flip = torch.rand(copies, generator=generator) < 0.1
        labels.append(torch.where(flip, torch.randint(1, 4, (copies,), generator=generator), label))
    xy = torch.rand(false_alarms, 2, generator=generator) * 48
    boxes.append(torch.cat([xy, xy + 6 + torch.rand(false_alarms, 2, generator=generator) * 20], 1))
    scores.append(torch.rand(false_alarms, generator=generator) * 0.6)
    labels.append(torch.randint(1, 4, (false_alarms,), generator=generator))
    boxes = torch.cat(boxes)  # jitter may swap corners: sort them, keep inside the image
    boxes = torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    return {"boxes": boxes.clamp(0, 64), "scores": torch.cat(scores), "labels": torch.cat(labels)}


crowd_image, crowd_target = ShapesDataset(20, seed=4)[19]  # a circle, a square, a triangle
crowd = simulated_detections(crowd_target, torch.Generator().manual_seed(0))
keep = ops.batched_nms(crowd["boxes"], crowd["scores"], crowd["labels"], 0.5)
assert torch.equal(keep, torchvision.ops.batched_nms(crowd["boxes"], crowd["scores"], crowd["labels"], 0.5))
print(f"{len(crowd['boxes'])} detections -> {len(keep)} after per-class NMS at IoU 0.5 "
      f"({len(crowd_target['boxes'])} objects); same indices as torchvision")

# %% [markdown]
# **Iteration by iteration** (`ops.nms_steps`, class-agnostic here; `batched_nms` runs the same
# loop within each class): at each step the best box left is kept (thick), the boxes it
# overlaps by more than 0.5 are removed (red, dashed), the rest wait for the next step (grey).

# %%
steps = ops.nms_steps(crowd["boxes"], crowd["scores"], 0.5)
fig_steps, axes_steps = plt.subplots(2, 4, figsize=(10, 5.6))
waiting = torch.ones(len(crowd["boxes"]), dtype=torch.bool)
for step, (ax, (best, removed)) in enumerate(zip(axes_steps.flat, steps), start=1):
    viz.show_image(ax, crowd_image, f"step {step}: keep {crowd['scores'][best]:.2f}, remove {len(removed)}")
    waiting[best] = False
    waiting[removed] = False
    viz.draw_boxes(ax, crowd["boxes"][waiting], color="0.6", linewidth=0.6)
    viz.draw_boxes(ax, crowd["boxes"][[k for k, _ in steps[: step - 1]]], color="white", linewidth=1)
    viz.draw_boxes(ax, crowd["boxes"][removed], color="red", linewidth=1, linestyle="--")
    viz.draw_boxes(ax, crowd["boxes"][[best]], crowd["labels"][[best]], class_names=names, linewidth=2.5)
fig_steps.legend(handles=[plt.Line2D([], [], color=c, lw=w, ls=ls, label=t) for c, w, ls, t in [
    ("tab:blue", 2.5, "-", "kept at this step (class colour)"), ("white", 1, "-", "kept before"),
    ("red", 1, "--", "removed at this step"), ("0.6", 0.6, "-", "still waiting")]],
    loc="lower center", ncol=4, fontsize=8, facecolor="0.85")
fig_steps.tight_layout(rect=(0, 0.06, 1, 1))
plt.show()
print(f"{len(steps)} iterations keep {len(steps)} of {len(crowd['boxes'])} boxes (the first 8 drawn)")
assert [k for k, _ in steps] == ops.nms(crowd["boxes"], crowd["scores"], 0.5).tolist()

# %%
fig_nms, ax_nms = plt.subplots(figsize=(4.6, 4.6))
viz.show_image(ax_nms, crowd_image)
nms_artists = []


def show_nms(iou_threshold, score_threshold):
    for artist in nms_artists:
        artist.remove()
    nms_artists.clear()
    confident = torch.nonzero(crowd["scores"] >= score_threshold).flatten()
    kept = confident[ops.batched_nms(crowd["boxes"][confident], crowd["scores"][confident],
                                     crowd["labels"][confident], iou_threshold)]
    nms_artists.extend(viz.draw_boxes(ax_nms, crowd["boxes"][kept], crowd["labels"][kept], crowd["scores"][kept],
                                      class_names=names, linewidth=1))
    ax_nms.set_title(f"IoU {iou_threshold:.2f}, score {score_threshold:.2f}: {len(kept)} of {len(crowd['boxes'])} "
                     "boxes kept", fontsize=9)


_ = widgets.explore(fig_nms, show_nms, iou_threshold=widgets.slider("NMS IoU threshold", 0.0, 1.0, 0.5),
                    score_threshold=widgets.slider("score threshold", 0.0, 1.0, 0.3))

# %% [markdown]
# A low IoU threshold also removes correct boxes of *neighbouring* objects; a high one keeps
# duplicates. Raising the score threshold removes the false alarms first.
#
# ## 5. Precision, recall and average precision
#
# Take all detections of a class over the data set, sorted by score. Going down the list,
# each detection is a true positive (TP) if it matches a not-yet-matched object with IoU at
# least the threshold, else a false positive (FP); then
#
# $$\text{precision} = \frac{TP}{TP + FP}, \qquad \text{recall} = \frac{TP}{\#\text{objects}}.$$
#
# AP summarises the precision-recall curve; the three interpolations of the lectures:
#
# - **VOC 11-point** (2007): mean of the best precision at recall $\ge 0, 0.1, \dots, 1$;
# - **all-point** (VOC 2010+): area under the monotone envelope of the curve;
# - **COCO 101-point**: mean of the envelope at recall $0, 0.01, \dots, 1$.
#
# COCO's **mAP** averages AP over classes and over IoU thresholds 0.50:0.05:0.95.
#
# The detections below are those of a trained detector, the Faster R-CNN of notebook 05
# (`recipes.load_model("faster_rcnn")`), on 100 held-out scenes (seed 5; it was trained on
# seed 0), after its own NMS.

# %%
dataset = ShapesDataset(100, seed=5)
targets = [dataset[i][1] for i in range(len(dataset))]
detector = recipes.load_model("faster_rcnn", device=device)
predictions = detect(detector, [dataset[i][0] for i in range(len(dataset))])
result = metrics.evaluate_detections(predictions, targets)
print(f"mAP@[.5:.95] = {result['map']:.4f}, AP50 = {result['map_50']:.4f}, AP75 = {result['map_75']:.4f}")
print("per class:", {names[c - 1]: round(ap, 4) for c, ap in result["per_class"].items()})

# %% [markdown]
# The same detections, evaluated by the official COCO tools:

# %%
coco_gt = COCO()
coco_gt.dataset = to_coco(dataset)
results = [{"image_id": i, "category_id": int(label), "score": float(score),
            "bbox": [x1, y1, x2 - x1, y2 - y1]}
           for i, p in enumerate(predictions)
           for (x1, y1, x2, y2), score, label in zip(p["boxes"].tolist(), p["scores"], p["labels"])]
with contextlib.redirect_stdout(io.StringIO()):
    coco_gt.createIndex()
    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
print(f"pycocotools: mAP {coco_eval.stats[0]:.4f}, AP50 {coco_eval.stats[1]:.4f}, AP75 {coco_eval.stats[2]:.4f}")
assert abs(coco_eval.stats[0] - result["map"]) < 1e-9 and abs(coco_eval.stats[1] - result["map_50"]) < 1e-9

# %% [markdown]
# Step by step for one class at IoU 0.75 (where this detector still makes mistakes), with the
# three interpolations, and the picture: the raw curve zig-zags (down at every false positive,
# up at every true positive); the **envelope** takes at each recall the best precision to its
# right; all-point AP is the area under the envelope, VOC 11-point AP the mean of the envelope
# at recall 0, 0.1, ..., 1.

# %%
label = 1
pairs = [(p, t) for p, t in zip(predictions, targets)]
all_scores, all_matched, num_objects = [], [], 0
for p, t in pairs:
    mine, theirs = p["labels"] == label, t["labels"] == label
    order = torch.sort(p["scores"][mine], descending=True, stable=True).indices
    iou_matrix = ops.box_iou(p["boxes"][mine][order].double(), t["boxes"][theirs].double()).nan_to_num(0)
    all_matched.append(metrics.match_detections(iou_matrix, torch.tensor([0.75]))[0])
    all_scores.append(p["scores"][mine][order].double())
    num_objects += int(theirs.sum())
precision, recall = metrics.precision_recall(torch.cat(all_scores), torch.cat(all_matched), num_objects)
aps = {"VOC 11-point": metrics.average_precision_voc11(recall, precision).item(),
       "all-point": metrics.average_precision_all_points(recall, precision).item(),
       "COCO 101-point": metrics.average_precision_coco(recall, precision).item()}
print(f"class {names[label - 1]}, IoU 0.75:", {k: round(v, 4) for k, v in aps.items()})
column = result["classes"].tolist().index(label)
at_075 = [round(t, 2) for t in result["iou_thresholds"].tolist()].index(0.75)
assert abs(aps["COCO 101-point"] - result["precision"][at_075, :, column].mean().item()) < 1e-9

envelope = metrics.precision_envelope(precision)
voc_points = metrics.interpolated_precision(recall, precision, metrics.VOC11_RECALL_THRESHOLDS)
fig_raw, ax_raw = plt.subplots(figsize=(6.4, 3.6))
ax_raw.fill_between(np.r_[0, recall], np.r_[envelope[:1], envelope], step="pre", color="tab:green", alpha=0.2,
                    label=f"all-point AP = area = {aps['all-point']:.3f}")
ax_raw.plot(recall, precision, color="0.4", lw=0.8, marker=".", ms=3, label="raw precision-recall")
ax_raw.step(recall, envelope, where="pre", color="tab:green", lw=1.5, label="envelope")
ax_raw.plot(metrics.VOC11_RECALL_THRESHOLDS, voc_points, "o", color="tab:red",
            label=f"11 points: VOC AP = mean = {aps['VOC 11-point']:.3f}")
ax_raw.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05),
           title=f"class {names[label - 1]}, IoU 0.75, {len(recall)} detections")
ax_raw.legend(fontsize=8, loc="lower left")
plt.show()
assert (precision < envelope).any()  # the raw curve does zig-zag below its envelope

# %% [markdown]
# The stricter the IoU threshold, the fewer detections count as hits and the lower the curve:

# %%
fig_pr, ax_pr = plt.subplots(figsize=(4.2, 3.0))
curves = [ax_pr.plot([], [], color=viz.class_color(c), label=names[c - 1])[0] for c in result["classes"].tolist()]
ax_pr.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="recall", ylabel="precision")
ax_pr.legend(fontsize=8, loc="lower left")
thresholds = [round(t, 2) for t in result["iou_thresholds"].tolist()]
recall_grid = result["recall_thresholds"].numpy()
curves_table = result["precision"].clamp(min=0).numpy()  # [T, R, K]; NumPy draws fast


def show_pr(iou_threshold):
    t = thresholds.index(iou_threshold)
    for k, curve in enumerate(curves):
        curve.set_data(recall_grid, curves_table[t, :, k])
    ap = curves_table[t].mean()
    ax_pr.set_title(f"IoU {iou_threshold:.2f}: mAP = {ap:.3f}", fontsize=10)


_ = widgets.explore(fig_pr, show_pr, iou_threshold=widgets.dropdown("IoU threshold", thresholds, 0.5))

# %%
ap_by_threshold = result["precision"].clamp(min=0).mean(dim=(1, 2))
print("mAP at IoU 0.50 ... 0.95:", [round(v, 3) for v in ap_by_threshold.tolist()])
assert (ap_by_threshold[:-1] >= ap_by_threshold[1:]).all()  # stricter matching never helps

# %% [markdown]
# ## Summary
#
# - Single-object detection is classification + box regression with a multitask loss; the
#   weight $\lambda$ decides how much the shared features serve localization (measured above).
# - Many objects need a variable number of outputs; sliding windows need tens of thousands of
#   CNN passes per image, the motivation for region proposals (notebook 05) and single-stage
#   detectors (notebook 06).
# - IoU compares boxes; NMS removes duplicates (per class); AP summarises the precision-recall
#   curve, and COCO mAP averages it over classes and IoU thresholds. `cvlib.metrics` gives the
#   same mAP as `pycocotools`, and `cvlib.ops` the same IoU and NMS as `torchvision`.
#
# ## Exercises
#
# 1. Replace smooth L1 by L2 (`box_loss="l2"` in `model.loss`) in `short_run`. Which learns
#    boxes faster here, and why does smooth L1 help when some targets are far off?
# 2. In the NMS explorer, find the IoU threshold at which two overlapping objects of the same
#    class start to lose one of their boxes.
# 3. Compute the VOC 11-point and all-point AP for every class. When do they differ most?
# 4. Make the simulated detector worse (more jitter) and watch AP50 and AP75 move apart.

# %% [markdown]
# ## Your turn: implement it
#
# Write the detection basics yourself: `box_iou`, `nms` (greedy, highest score first),
# `average_precision_all_points`, `average_precision_coco` (both on the precision envelope) and
# `smooth_l1`. Each function has cvlib's signature and docstring; `check(name, fn)` runs it
# against cvlib's version on hand-picked edge cases (empty inputs, ties, thresholds at the
# boundary, non-contiguous tensors) and on seeded random cases, gradients included where the
# function is trained through. It prints `NAME: N cases passed`, or raises an `AssertionError`
# with the smallest failing input, the expected and the actual output and, when it recognises
# one, the classic mistake. A function that still raises `NotImplementedError` gets `NAME: not
# implemented yet`.
#
# In `notebooks/04_detection_basics.ipynb` the solutions are filled in;
# `assignments/04_detection_basics.ipynb` (written by `make assignments`) has a stub in their
# place. Nothing above uses these cells.

# %%
import numpy as np
import torch

from cvlib import ops
from cvlib.exercises import check


# %% nbgrader={"grade": false, "grade_id": "box_iou", "locked": false, "schema_version": 3, "solution": true}
def box_iou(boxes1, boxes2):
    """IoU ``[N, M]`` of every box of ``boxes1 [N, 4]`` with every box of ``boxes2 [M, 4]``
    (xyxy, continuous coordinates: a box is ``x2 - x1`` wide)."""
    ### BEGIN SOLUTION
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)  # no overlap: 0, not negative
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)
    ### END SOLUTION


# %%
check("box_iou", box_iou)


# %% nbgrader={"grade": false, "grade_id": "nms", "locked": false, "schema_version": 3, "solution": true}
def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression: indices (int64) of the kept ``boxes [N, 4]``, in
    decreasing order of ``scores [N]`` (equal scores in index order). A box is dropped when
    its IoU with a kept, better-scoring box is ``> iou_threshold``."""
    ### BEGIN SOLUTION
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = ops.box_iou(boxes, boxes)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if not suppressed[i]:
            keep.append(i)
            suppressed |= iou[i] > iou_threshold  # only kept boxes suppress
    return torch.tensor(keep, dtype=torch.int64)
    ### END SOLUTION


# %%
check("nms", nms)


# %% nbgrader={"grade": false, "grade_id": "average_precision_all_points", "locked": false, "schema_version": 3, "solution": true}
def average_precision_all_points(recall, precision):
    """The area under the precision envelope, ``sum_k (r_k - r_{k-1}) p_interp(r_k)`` with
    ``r_0 = 0``, of curves ``recall, precision [..., D]``: float64 ``[...]``."""
    ### BEGIN SOLUTION
    recall, precision = recall.double(), precision.double()
    envelope = precision.flip(-1).cummax(-1).values.flip(-1)  # best precision at >= this recall
    steps = recall.diff(dim=-1, prepend=torch.zeros_like(recall[..., :1]))
    return (steps * envelope).sum(-1)
    ### END SOLUTION


# %%
check("average_precision_all_points", average_precision_all_points)


# %% nbgrader={"grade": false, "grade_id": "average_precision_coco", "locked": false, "schema_version": 3, "solution": true}
def average_precision_coco(recall, precision):
    """COCO's AP of curves ``recall, precision [..., D]``: the mean of the precision envelope
    sampled at the 101 recalls ``np.linspace(0, 1, 101)`` (at the first point with
    ``recall >= r``; 0 where the recall never reaches ``r``): float64 ``[...]``."""
    ### BEGIN SOLUTION
    recall, precision = recall.double().contiguous(), precision.double()
    envelope = precision.flip(-1).cummax(-1).values.flip(-1)
    envelope = torch.cat([envelope, torch.zeros_like(envelope[..., :1])], dim=-1)  # 0 beyond the end
    thresholds = torch.from_numpy(np.linspace(0, 1, 101)).expand(*recall.shape[:-1], -1).contiguous()
    first = torch.searchsorted(recall, thresholds)  # first point with recall >= r
    return envelope.gather(-1, first).mean(-1)
    ### END SOLUTION


# %%
check("average_precision_coco", average_precision_coco)


# %% nbgrader={"grade": false, "grade_id": "smooth_l1", "locked": false, "schema_version": 3, "solution": true}
def smooth_l1(input, target, beta=1.0):
    """Mean smooth L1 loss: ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``,
    with ``d = input - target``."""
    ### BEGIN SOLUTION
    d = (input - target).abs()
    return torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).mean()
    ### END SOLUTION


# %%
check("smooth_l1", smooth_l1)
