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
# # 09 · Visualizing and understanding networks
#
# What has a trained CNN learned, and which pixels does a decision use? The lecture answers
# with pictures; here each picture is also **scored** against the ground-truth object mask of
# the synthetic scenes, so "this method localizes better" becomes a number.
#
# | method | map for class $c$ |
# |---|---|
# | occlusion | drop of $p_c$ when a grey patch covers the pixel |
# | saliency | $M_{ij} = \max_{k} \lvert \partial S_c / \partial I_{k,i,j} \rvert$ (max over colour channels $k$) |
# | guided backprop | backprop where every ReLU also blocks negative gradients: $R^l = (f^l > 0)\,(R^{l+1} > 0)\,R^{l+1}$ |
# | CAM | $S_c = \sum_k w^c_k \frac{1}{Z}\sum_{ij} A^k_{ij}$, map $= \sum_k w^c_k A^k$ (needs GAP + FC) |
# | Grad-CAM | $\alpha^c_k = \frac{1}{Z}\sum_{ij} \partial S_c/\partial A^k_{ij}$, map $= \mathrm{ReLU}(\sum_k \alpha^c_k A^k)$ (any conv layer) |
# | guided Grad-CAM | guided backprop $\times$ upsampled Grad-CAM |
#
# **You will learn** to look at filters, feature spaces and maximally activating patches; to
# compute and compare the maps above; why CAM and Grad-CAM agree on a GAP + FC network; how to
# synthesize images that a class likes (class visualization) and images that fool the network
# (FGSM and its iterative version); and how a Vision Transformer's attention is read out
# (CLS attention, attention rollout). Every method lives in `cvlib.explain`; every function
# takes a model, a class and a layer, returns tensors and leaves the model unchanged (hooks
# removed, `requires_grad` restored), even when it raises.

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
import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

from cvlib import explain, metrics, recipes, runtime, viz, widgets
from cvlib.data import CLASSES, held_out_classification

device = runtime.start(seed=0)  # the device, one CPU thread, the seeds

# %% [markdown]
# ## The network and the held-out scenes
#
# `SmallCNN` (notebook 00) is seven 3x3 conv-BN-ReLU layers, global average pooling and one
# linear layer: exactly the structure CAM needs. The shipped checkpoint `shapes_cnn` was
# trained on 2000 single-object scenes (seed 0). We explain 100 held-out scenes (seed 1),
# `held_out_classification(100)`: images, labels and the mask of each scene's object.

# %%
model = recipes.load_model("shapes_cnn", device=device)
N = 100
images, labels, masks = held_out_classification(N, device)  # ShapesClassification(N, seed=1)
with torch.no_grad():
    accuracy = metrics.accuracy(model(images), labels)
print(f"classes {CLASSES}; held-out accuracy {accuracy:.3f}; object covers {masks.float().mean():.1%} of the pixels")
assert accuracy > 0.95

# %% [markdown]
# ## What the layers compute
#
# **First-layer filters** are the only weights that can be looked at directly: 3x3x3 colour
# filters, each scaled to $[0, 1]$. Deeper layers are read through their activations:
# **nearest neighbours** in the 128-d feature space (the input of the FC layer) find scenes of
# the same class even when their pixels differ a lot, and a **PCA** of the features separates
# the classes.

# %%
filters = explain.first_layer_filters(model).cpu()
fig, _ = viz.image_grid(list(filters), ncols=16, size=0.5)
fig.suptitle("the 16 first-layer filters (3x3 RGB)", fontsize=9, y=1.1)
plt.show()

features = explain.layer_features(model, images, "features")  # [N, 128]
pixels = images.flatten(1)
same_feature = (labels[explain.nearest_neighbours(features, features, k=2)[:, 1]] == labels).float().mean().item()
same_pixel = (labels[explain.nearest_neighbours(pixels, pixels, k=2)[:, 1]] == labels).float().mean().item()
print(f"nearest neighbour of the same class: feature space {same_feature:.2f}, pixel space {same_pixel:.2f}")
assert same_feature > same_pixel + 0.2

projection, ratio = explain.pca(features.cpu(), 2)
fig, ax = plt.subplots(figsize=(6.6, 4))
for c, name in enumerate(CLASSES):
    keep = (labels == c).cpu()
    ax.scatter(*projection[keep].T, s=8, color=viz.class_color(c + 1), label=name)
ax.set(title=f"PCA of the features ({ratio.sum():.0%} of the variance)", xticks=[], yticks=[],
       xlabel="principal component 1", ylabel="principal component 2")
ax.title.set_fontsize(9)
ax.legend(fontsize=8)
plt.show()

# %%
queries = [0, 1, 2]
neighbours = explain.nearest_neighbours(features[queries], features, k=6)
fig, _ = viz.image_grid([images[j].cpu() for row in neighbours for j in row], ncols=6, size=0.9)
fig.suptitle("each row: a query (left) and its 5 nearest neighbours in feature space", fontsize=9, y=1.03)
plt.show()

# %% [markdown]
# **Maximally activating patches**: for one channel of a layer, the scenes where it fires
# most, cropped to the receptive field of the strongest position (measured as the pixels where
# that activation's gradient is non-zero). Layer `features.4` has a 19-pixel receptive field.

# %%
fig, axes = plt.subplots(3, 6, figsize=(6, 3.2))
for row, channel in zip(axes, [0, 5, 9]):
    index, boxes, _ = explain.max_activating_patches(model, images, "features.4", channel, k=6)
    for ax, i, (x1, y1, x2, y2) in zip(row, index.tolist(), boxes.int().tolist()):
        viz.show_image(ax, images[i, :, y1:y2, x1:x2].cpu())
    row[0].set_ylabel(f"channel {channel}", fontsize=8)
fig.suptitle("top-6 patches of three channels of features.4", fontsize=9)
plt.show()

# %% [markdown]
# ## Six maps of the same decision
#
# Each method explains the predicted class of the first scenes. Occlusion needs one forward
# pass per patch position ($9 \times 9$ here), the gradient methods one backward pass, CAM no
# backward pass at all.

# %%
show = images[:4]
t0 = time.perf_counter()
maps = {
    "occlusion": explain.occlusion(model, show, patch=12, stride=6),
    "saliency": explain.saliency(model, show),
    "SmoothGrad": explain.smoothgrad(model, show, samples=16),
    "guided backprop": explain.guided_backprop(model, show).abs().amax(dim=1),
    "CAM": explain.cam(model, show),
    "Grad-CAM": explain.grad_cam(model, show, layer="features"),
    "guided Grad-CAM": explain.guided_grad_cam(model, show, layer="features").abs().amax(dim=1),
}
print(f"seven maps of 4 scenes in {time.perf_counter() - t0:.2f} s")
fig, axes = plt.subplots(4, 8, figsize=(12.5, 5.2))
for r in range(4):
    viz.show_image(axes[r, 0], show[r].cpu(), "image" if r == 0 else None)
    for ax, (name, m) in zip(axes[r, 1:], maps.items()):
        scaled = (m[r] / m[r].abs().max().clamp(min=1e-12)).cpu()  # each map over its own maximum
        heat = viz.show_image(ax, scaled, name if r == 0 else None, cmap="inferno", vmin=0, vmax=1)
fig.colorbar(heat, ax=axes, shrink=0.6, label="map / its maximum")
plt.show()

# %% [markdown]
# ## CAM and Grad-CAM agree on a GAP + FC network
#
# With $S_c = \sum_k w^c_k \frac{1}{Z}\sum_{ij} A^k_{ij}$, the gradient is
# $\partial S_c / \partial A^k_{ij} = w^c_k / Z$, so $\alpha^c_k = w^c_k / Z$ and Grad-CAM at the
# last conv layer is $\mathrm{ReLU}(\mathrm{CAM}) / Z$ with $Z = 8 \times 8 = 64$ positions.

# %%
cam = explain.cam(model, images, labels, upsample=False)
gradcam = explain.grad_cam(model, images, labels, layer="features", upsample=False)
corr = np.corrcoef(cam.relu().flatten().cpu(), gradcam.flatten().cpu())[0, 1]
positive = gradcam > 1e-6
scale = (cam.relu()[positive] / gradcam[positive])
print(f"correlation of ReLU(CAM) and Grad-CAM over {N} scenes: {corr:.6f}; "
      f"ratio {scale.min():.3f} .. {scale.max():.3f} (Z = {cam.shape[1] * cam.shape[2]})")
corr_signed = np.corrcoef(cam.flatten().cpu(), gradcam.flatten().cpu())[0, 1]
print(f"correlation with the signed CAM (Grad-CAM drops the negative part): {corr_signed:.3f}")
assert corr > 0.9999 and abs(scale.mean().item() - 64) < 1e-2

# %% [markdown]
# ## Which map points at the object?
#
# Two scores against the object mask, on all held-out scenes, for the true class:
# the **pointing game** (is the map's maximum on the object?) and the **IoU** of the region
# above half the map's maximum with the mask. A random point hits the object with the
# probability of its area.

# %%
def all_maps(model, x, y):
    return {
        "occlusion (12, 6)": explain.occlusion(model, x, y, patch=12, stride=6),
        "saliency": explain.saliency(model, x, y),
        "SmoothGrad": explain.smoothgrad(model, x, y, samples=8),
        "guided backprop": explain.guided_backprop(model, x, y).abs().amax(dim=1),
        "CAM": explain.cam(model, x, y),
        "Grad-CAM (features)": explain.grad_cam(model, x, y, layer="features"),
        "Grad-CAM (features.4)": explain.grad_cam(model, x, y, layer="features.4"),
        "guided Grad-CAM": explain.guided_grad_cam(model, x, y).abs().amax(dim=1),
    }


def localization(maps, masks):
    """(pointing game hit rate, mean IoU of the half-maximum region) of ``maps`` [N, H, W]."""
    return explain.pointing_game(maps, masks).float().mean().item(), explain.map_iou(maps, masks).mean().item()


t0 = time.perf_counter()
true_maps = all_maps(model, images, labels)
scores = {name: localization(m, masks) for name, m in true_maps.items()}
# The two sanity checks score the first 50 scenes (three passes over all 100 would double the
# time); the true-class column beside them is scored on the same 50.
S = 50
wrong_classes = (labels[:S] + 1) % len(CLASSES)  # a class that is not in the scene
torch.manual_seed(0)
random_model = copy.deepcopy(model)  # the same network with fresh random weights
for layer in random_model.modules():
    if hasattr(layer, "reset_parameters"):
        layer.reset_parameters()
hit_true = {name: localization(m[:S], masks[:S])[0] for name, m in true_maps.items()}
hit_wrong = {name: localization(m, masks[:S])[0] for name, m in all_maps(model, images[:S], wrong_classes).items()}
hit_random = {name: localization(m, masks[:S])[0] for name, m in all_maps(random_model, images[:S], labels[:S]).items()}
print(f"8 methods x ({N} + 2 x {S}) scenes in {time.perf_counter() - t0:.1f} s\n")
print(f"{'':24s} {N} scenes, true class     sanity checks on {S} scenes: pointing game with")
print(f"{'method':24s} pointing game   IoU   {'true class':>11s} {'wrong class':>12s} {'random weights':>15s}")
for name, (hit, iou) in scores.items():
    print(f"{name:24s} {hit:13.2f}   {iou:.3f} {hit_true[name]:11.2f} {hit_wrong[name]:12.2f} {hit_random[name]:15.2f}")
print(f"{'random point':24s} {masks.float().mean():13.2f}")

# %% [markdown]
# **Sanity checks** (Adebayo et al. 2018). A map that explains the *decision* must change when
# we ask for a class that is not in the scene, and when the network's weights are replaced by
# random ones; a map that stays on the object in both cases shows the image (its edges), not
# what the network learned. The last two columns score exactly that, on the first 50 scenes
# (next to the true class on the same 50): a high pointing game there is a failure. What the
# table says on these scenes (the asserts hold the measured claims):
#
# - CAM and Grad-CAM at the last layer give the **best region** (highest IoU): their coarse
#   $8 \times 8$ map covers the object, while gradient maps are sparse edge-like speckle whose
#   half-maximum region is a few pixels. They are **class-discriminative**: for the wrong
#   class they almost never point at the object. With random weights they still point at it
#   in a large share of scenes (random convolutions respond to the only structure in the
#   scene), well below the trained network.
# - **Guided backprop points best, and that means little here**: it points at the object just
#   as often for the wrong class and still most of the time with random weights. It fails both
#   checks: its map is mostly a picture of the object's edges, which is what Adebayo et al.
#   found on ImageNet. Guided Grad-CAM inherits the class check from Grad-CAM (it multiplies by
#   it) but not the weight check.
# - Plain **saliency** passes the weight check but not the class check on these one-object
#   scenes: the input gradient of any class score is largest on the object.
# - At the pointing game CAM/Grad-CAM do **not** beat saliency (the lecture's ordering does not
#   hold here): the peak of a bilinearly upsampled $8 \times 8$ map often lands just off a
#   small object's border.

# %%
hit = {name: s[0] for name, s in scores.items()}
iou = {name: s[1] for name, s in scores.items()}
chance = masks.float().mean().item()
assert iou["CAM"] > 2 * iou["saliency"] and iou["Grad-CAM (features)"] > 2 * iou["saliency"]
assert min(hit.values()) > chance
for name in ("CAM", "Grad-CAM (features)"):  # class check passed: far fewer hits for the wrong class
    assert hit_wrong[name] < hit_true[name] / 2, name
for name in ("guided backprop", "saliency"):  # class check failed: as many hits for the wrong class
    assert hit_wrong[name] >= 0.9 * hit_true[name], name
assert hit_random["guided backprop"] > max(0.5, 5 * chance)  # weight check failed: random weights still point
assert hit_random["saliency"] < hit_true["saliency"] / 2  # weight check passed
assert hit_random["CAM"] < hit_true["CAM"] - 0.1  # random features find the object less often
print(f"guided backprop on {S} scenes: {hit_true['guided backprop']:.2f} true class, {hit_wrong['guided backprop']:.2f} wrong class, "
      f"{hit_random['guided backprop']:.2f} random weights")

# %% [markdown]
# **Why SmoothGrad scores below plain saliency.** SmoothGrad averages the saliency of noisy
# copies; the pointing game reads one pixel, the maximum of that average. With the 8 copies
# used above (to keep the table fast) the average is itself noisy, and its maximum lands off
# the small object more often than plain saliency's; with more copies the noise averages out
# and the object's edges, where every copy agrees, win. The score depends on that budget:

# %%
smooth_hits = {8: scores["SmoothGrad"][0],  # the table's maps, 8 copies
               32: explain.pointing_game(explain.smoothgrad(model, images, labels, samples=32), masks).float().mean().item()}
print(f"SmoothGrad pointing game: {smooth_hits[8]:.2f} with 8 copies, {smooth_hits[32]:.2f} with 32; "
      f"saliency {hit['saliency']:.2f}")
assert smooth_hits[32] > smooth_hits[8] + 0.05 and smooth_hits[32] > hit["saliency"]

# %% [markdown]
# ## Explorer: image, class, layer, method
#
# Grad-CAM at an early layer is sharp but not class-specific; at the last layer it is coarse
# but follows the class. Explaining a class that is *not* in the image shows where the
# network finds the least evidence against it.

# %%
METHODS = {
    "Grad-CAM": lambda x, c, layer: explain.grad_cam(model, x, c, layer=layer),
    "CAM": lambda x, c, layer: explain.cam(model, x, c),
    "saliency": lambda x, c, layer: explain.saliency(model, x, c),
    "guided Grad-CAM": lambda x, c, layer: explain.guided_grad_cam(model, x, c, layer=layer).abs().amax(dim=1),
}
fig_cam, (ax_cam_image, ax_cam_map) = plt.subplots(1, 2, figsize=(5.4, 2.6))
image_artist = viz.show_image(ax_cam_image, images[0].cpu())
map_artist = viz.show_image(ax_cam_map, np.zeros((64, 64)), "", cmap="inferno", vmin=0, vmax=1)
fig_cam.colorbar(map_artist, ax=ax_cam_map, label="map / its maximum")


def show_map(index, cls, layer, method):
    x = images[index:index + 1]
    m = METHODS[method](x, CLASSES.index(cls), layer)[0].cpu()
    image_artist.set_data(viz.to_numpy_image(x[0]))
    map_artist.set_data((m / m.max().clamp(min=1e-12)).numpy())
    pointed = explain.pointing_game(m[None], masks[index:index + 1].cpu())[0]
    ax_cam_map.set_title(f"{method}: {cls}, {'hit' if pointed else 'miss'}", fontsize=8)
    ax_cam_image.set_title(f"scene {index}: {CLASSES[labels[index]]}", fontsize=8)


_ = widgets.explore(fig_cam, show_map, index=widgets.int_slider("scene", 0, N - 1),
                    cls=widgets.dropdown("class", list(CLASSES), CLASSES[labels[0]]),
                    layer=widgets.dropdown("layer", [f"features.{k}" for k in range(7)], "features.6"),
                    method=widgets.dropdown("method", list(METHODS)))

# %% [markdown]
# ## Occlusion: patch size and stride
#
# A patch smaller than the object only dents the score; a patch that covers the object
# removes it. The stride sets the resolution and the cost (one forward pass per position).

# %%
fig_occlusion, (ax_occlusion_image, ax_occlusion) = plt.subplots(1, 2, figsize=(5.4, 2.6))
viz.show_image(ax_occlusion_image, images[1].cpu(), f"{CLASSES[labels[1]]}")
occlusion_artist = viz.show_image(ax_occlusion, np.zeros((64, 64)), "", cmap="RdBu_r", vmin=-1, vmax=1)
fig_occlusion.colorbar(occlusion_artist, ax=ax_occlusion, label="drop of p")


def show_occlusion(patch, stride):
    t0 = time.perf_counter()
    m = explain.occlusion(model, images[1:2], patch=patch, stride=stride)[0].cpu()
    occlusion_artist.set_data(m.numpy())
    ax_occlusion.set_title(f"patch {patch}, stride {stride}: max {m.max():.2f} ({time.perf_counter() - t0:.2f} s)",
                           fontsize=8)


_ = widgets.explore(fig_occlusion, show_occlusion, patch=widgets.int_slider("patch", 4, 32, 12, step=4),
                    stride=widgets.int_slider("stride", 4, 16, 8, step=4))

# %% [markdown]
# ## Images the network likes: class visualization and DeepDream
#
# Gradient ascent on the *input*: $I^* = \arg\max_I S_c(I) - \lambda \lVert I \rVert^2$, with a
# blur every few steps as a smoothness prior. DeepDream instead ascends
# $\frac12\lVert A(I)\rVert^2$ of a layer, amplifying whatever that layer already sees.

# %%
fig, axes = plt.subplots(1, 5, figsize=(7, 1.8))
for c, ax in enumerate(axes[:3]):
    synthetic = explain.class_visualization(model, c, steps=100)
    with torch.no_grad():
        p = model(synthetic[None]).softmax(dim=1)[0, c].item()
    viz.show_image(ax, synthetic.cpu(), f"{CLASSES[c]}: p = {p:.2f}")
    assert p > 0.9
viz.show_image(axes[3], images[2].cpu(), "a scene")
viz.show_image(axes[4], explain.deep_dream(model, images[2], "features.2", steps=20).cpu(), "DeepDream features.2")
plt.show()

# %% [markdown]
# ## Images that fool the network
#
# FGSM takes one step $I' = I + \epsilon\,\mathrm{sign}(\nabla_I L)$; the iterative version
# takes small steps and projects back to $\lVert I' - I\rVert_\infty \le \epsilon$. A change of
# a few grey levels out of 255, invisible to us, takes the accuracy from 1 towards 0, and the
# iterative attack needs a smaller $\epsilon$ than the single FGSM step.

# %%
attacked, attacked_labels = images[:50], labels[:50]  # the first 50 held-out scenes
with torch.no_grad():
    clean = (model(attacked).argmax(dim=1) == attacked_labels).float().mean().item()
for eps in (1 / 255, 3 / 255, 8 / 255):
    with torch.no_grad():
        acc_fgsm = (model(explain.fgsm(model, attacked, attacked_labels, eps)).argmax(dim=1) == attacked_labels
                    ).float().mean().item()
    adv = explain.iterative_attack(model, attacked, attacked_labels, eps=eps, step_size=eps / 4, steps=10)
    with torch.no_grad():
        acc_iter = (model(adv).argmax(dim=1) == attacked_labels).float().mean().item()
    print(f"eps = {eps * 255:.0f}/255, 50 scenes: accuracy {clean:.2f} -> FGSM {acc_fgsm:.2f}, iterative {acc_iter:.2f}")
assert acc_iter < 0.1 and acc_iter <= acc_fgsm

# %% [markdown]
# **Explorer**: a targeted (fooling) attack on one scene, step by step, with
# $\epsilon = 8/255$: the predicted class and the perturbation (amplified).

# %%
target_class = (labels[3].item() + 1) % 3
steps_path = explain.iterative_attack(model, images[3:4], labels[3:4], eps=8 / 255, step_size=1 / 255,
                                      steps=20, target=target_class, return_path=True)  # [21, 1, 3, H, W]
with torch.no_grad():
    fooled_probs = [model(x).softmax(dim=1)[0] for x in steps_path]
print(f"fooling {CLASSES[labels[3]]} -> {CLASSES[target_class]}: p(target) after 20 steps "
      f"{fooled_probs[-1][target_class]:.2f}")
assert fooled_probs[-1].argmax().item() == target_class

fig_attack, (ax_adv, ax_delta) = plt.subplots(1, 2, figsize=(4.6, 2.6))
adv_artist = viz.show_image(ax_adv, images[3].cpu())
delta_artist = viz.show_image(ax_delta, np.zeros((64, 64, 3)), "perturbation x 30 + 0.5")


def show_attack(steps):
    x = steps_path[steps][0]
    adv_artist.set_data(viz.to_numpy_image(x))
    delta_artist.set_data(viz.to_numpy_image((x - images[3]) * 30 + 0.5))
    p = fooled_probs[steps]
    ax_adv.set_title(f"step {steps}: predicted {CLASSES[p.argmax()]} ({p.max():.2f})", fontsize=8)


_ = widgets.explore(fig_attack, show_attack, steps=widgets.int_slider("steps", 0, 20, 20))

# %% [markdown]
# ## A real photo
#
# No pretrained ImageNet weights can be downloaded here, so there is no honest class
# explanation of a real photo. What does transfer is the first layer: its colour and edge
# filters, trained on the synthetic scenes, respond to the same local structure in
# scikit-image's sample photo (three channels of `features.0`).

# %%
photo = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float().div(255)
photo = F.interpolate(photo[None], size=(150, 225), mode="bilinear", antialias=True).to(device)
responses = explain.layer_features(model, photo, "features.0", pool=False)[0].cpu()
fig, axes = plt.subplots(1, 4, figsize=(8, 1.8))
viz.show_image(axes[0], photo[0].cpu(), "skimage.data.chelsea()")
for ax, k in zip(axes[1:], responses.flatten(1).std(dim=1).topk(3).indices.tolist()):
    fig.colorbar(viz.show_image(ax, responses[k], f"features.0 channel {k}", cmap="gray"), ax=ax, shrink=0.8)
plt.show()

# %% [markdown]
# ## Vision Transformers: CLS attention and attention rollout
#
# A ViT has no conv maps, but each layer's attention $A_l$ `[B, heads, T, T]` says where each
# token looks. The CLS row of the last layer is a map per head; **attention rollout** follows
# the attention through all layers and the residual connections,
# $\tilde A = \prod_l (\tfrac12 \bar A_l + \tfrac12 I)$ with $\bar A_l$ the head mean.
# `cvlib.explain.attention` takes the list of attention tensors that the ViT of notebook 01
# returns when asked. Here a hand-made 2-layer example ($3 \times 3$ patches) shows why rollout
# differs from the last layer: layer 2's CLS token looks at patch 4, which in layer 1 looked at
# patch 0.

# %%
tokens = 10
layer1 = torch.full((1, 2, tokens, tokens), 0.1)
layer1[0, :, 5] = torch.eye(tokens)[1]  # token 5 (patch 4) attends to token 1 (patch 0)
layer2 = torch.full((1, 2, tokens, tokens), 0.1)
layer2[0, :, 0] = torch.eye(tokens)[5]  # CLS attends to token 5 (patch 4)
last = explain.cls_attention([layer1, layer2])[0, 0]
rollout = explain.tokens_to_grid(explain.attention_rollout([layer1, layer2])[0, 0, 1:])
fig, axes = plt.subplots(1, 2, figsize=(7, 3))
viz.show_image(axes[0], last, "CLS attention, last layer", cmap="viridis", vmin=0, vmax=1)
heat = viz.show_image(axes[1], rollout, "attention rollout", cmap="viridis", vmin=0, vmax=1)
fig.colorbar(heat, ax=axes, label="attention of CLS to the patch")
plt.show()
print(f"rollout mass on patch 0: {rollout[0, 0]:.3f}, on patch 4: {rollout[1, 1]:.3f}")
assert last[0, 0] == 0 and rollout[0, 0] > 0.1

# %% [markdown]
# **The trained ViT of notebook 01** (`vit`: $8 \times 8$ patches of the same 64x64 scenes, a CLS
# token, 4 Pre-LN blocks of 4 heads) on the same 100 held-out scenes: the CLS attention of its
# last layer (head mean) and its attention rollout, each an $8 \times 8$ map upsampled like CAM,
# scored with the same two measures as the CNN's maps.

# %%
vit = recipes.load_model("vit", device=device)
with torch.no_grad():
    vit_logits, attentions = vit(images, return_attention=True)
vit_accuracy = metrics.accuracy(vit_logits, labels)
vit_maps = {
    "ViT CLS attention (last)": explain.upsample_map(explain.cls_attention(attentions).mean(dim=1), (64, 64)),
    "ViT attention rollout": explain.upsample_map(
        explain.tokens_to_grid(explain.attention_rollout(attentions)[:, 0, 1:]), (64, 64)),
}
print(f"ViT held-out accuracy {vit_accuracy:.3f}\n")
print(f"{'method':26s} pointing game   IoU(map > max/2, mask)")
for name, m in vit_maps.items():
    scores[name] = localization(m, masks)
for name in ["CAM", "saliency", *vit_maps]:
    print(f"{name:26s} {scores[name][0]:13.2f}   {scores[name][1]:.3f}")
fig_vit, axes_vit = plt.subplots(3, 4, figsize=(6.4, 4.6))
for col in range(4):
    viz.show_image(axes_vit[0, col], images[col].cpu(), CLASSES[int(labels[col])])
    for row, name in enumerate(vit_maps, start=1):
        m = vit_maps[name][col]
        heat = viz.show_image(axes_vit[row, col], (m / m.max()).cpu(), cmap="viridis", vmin=0, vmax=1)
        axes_vit[row, 0].set_ylabel(name.removeprefix("ViT "), fontsize=8)
fig_vit.colorbar(heat, ax=axes_vit, shrink=0.6, label="map / its maximum")
plt.show()
assert vit_accuracy > 0.9
assert all(scores[name][0] > masks.float().mean().item() for name in vit_maps)  # better than a random point

# %% [markdown]
# Both attention maps find the object. The last layer's CLS attention picks a few patches (its
# peak is on the object about as often as CAM's); rollout, which adds up the paths through all
# layers and residuals, spreads over the whole object: its half-maximum region matches the mask
# better than any CNN map above, though its peak lands off the object more often.

# %%
rollout_iou, cam_iou = scores["ViT attention rollout"][1], scores["CAM"][1]
print(f"IoU with the object mask: attention rollout {rollout_iou:.3f}, CAM {cam_iou:.3f}")
assert rollout_iou > cam_iou

# %% [markdown]
# ## On real photographs
#
# The same `cvlib.explain` functions on torchvision's **ResNet-18 trained on ImageNet**
# (loaded by `cvlib.pretrained`: a 44.7 MB download, cached afterwards) and scikit-image's
# photo of Chelsea the cat (`cvlib.data.photos`, with a hand-drawn box around the cat). A
# ResNet ends with global average pooling and one linear layer, so CAM applies, and Grad-CAM at
# `layer4` must equal ReLU(CAM) / Z for any weights: that identity, and the equality with the
# `pytorch-grad-cam` package when it is installed, are asserted always. What needs the trained
# weights ("tiger cat" is among the top classes; Grad-CAM peaks inside the cat's box) is asserted
# only when the cached file is the genuine one, and printed otherwise. Offline, one line says
# why the model part is skipped.

# %%
import torchvision.transforms.functional as TF

from cvlib import pretrained
from cvlib.data import photos

cat_photo = photos.load("chelsea", max_side=224).to(device)  # [3, 149, 224] in [0, 1]
cat_box = photos.target("chelsea", max_side=224)["boxes"][0].tolist()
resnet, resnet_genuine, _ = pretrained.load("resnet18")
if resnet is not None:
    resnet = resnet.to(device)
    resnet_weights = pretrained.weights_of("resnet18")
    imagenet = resnet_weights.meta["categories"]
    TIGER_CAT = imagenet.index("tiger cat")
    preprocess = resnet_weights.transforms()
    cat_input = TF.normalize(cat_photo, preprocess.mean, preprocess.std)[None]  # [1, 3, 149, 224]
    with torch.no_grad():
        cat_probs = resnet(cat_input).softmax(dim=1)[0]
    top5 = cat_probs.topk(5).indices.tolist()
    print("top-5:", ", ".join(f"{imagenet[i]} {cat_probs[i]:.2f}" for i in top5))
    if resnet_genuine:
        assert TIGER_CAT in top5
    else:
        print("weights not genuine: 'tiger cat in the top-5' is not asserted")

# %% [markdown]
# Five maps of the class "tiger cat" (occlusion: a 40-pixel grey patch every 24 pixels), and the
# 64 first-layer filters, 7x7 in colour: the lecture's oriented edges and colour blobs appear
# only with trained weights.

# %%
if resnet is not None:
    real_maps = {
        "saliency": explain.saliency(resnet, cat_input, TIGER_CAT),
        "occlusion": explain.occlusion(resnet, cat_input, TIGER_CAT, patch=40, stride=24, fill=0.0),
        "CAM": explain.cam(resnet, cat_input, TIGER_CAT, features="layer4", fc="fc"),
        "Grad-CAM": explain.grad_cam(resnet, cat_input, TIGER_CAT, layer="layer4"),
        "guided Grad-CAM": explain.guided_grad_cam(resnet, cat_input, TIGER_CAT, layer="layer4").abs().amax(dim=1),
    }
    fig, axes = plt.subplots(1, 6, figsize=(12, 1.9), dpi=100)
    viz.show_image(axes[0], cat_photo.cpu(), "chelsea, box drawn by hand")
    viz.draw_boxes(axes[0], torch.tensor([cat_box]), color="white")
    for ax, (name, m) in zip(axes[1:], real_maps.items()):
        heat = viz.show_image(ax, (m[0] / m[0].max().clamp(min=1e-12)).cpu(), name, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(heat, ax=axes[1:], shrink=0.8, label="map / its max (below 0: 0)")
    plt.show()
    fig, _ = viz.image_grid(list(explain.first_layer_filters(resnet).cpu()), ncols=16, size=0.45)
    fig.suptitle("ResNet-18 conv1: 64 filters, 7x7 RGB", fontsize=9, y=1.05)
    plt.show()

# %% [markdown]
# The identity, measured on this model: at `layer4` (a $7 \times 5$ map here, $Z = 35$) Grad-CAM
# times $Z$ is ReLU(CAM). And the peak of Grad-CAM against the cat's box.

# %%
if resnet is not None:
    small_cam = explain.cam(resnet, cat_input, TIGER_CAT, features="layer4", fc="fc", upsample=False)
    small_grad_cam = explain.grad_cam(resnet, cat_input, TIGER_CAT, layer="layer4", upsample=False)
    Z = small_cam[0].numel()
    gap = (small_grad_cam * Z - small_cam.relu()).abs().max().item() / small_cam.abs().max().item()
    print(f"layer4 map {tuple(small_cam.shape[1:])}, Z = {Z}: max |Grad-CAM * Z - ReLU(CAM)| / max |CAM| = {gap:.1e}")
    assert gap < 1e-4
    y, x = divmod(real_maps["Grad-CAM"][0].argmax().item(), cat_photo.shape[2])
    inside = cat_box[0] <= x < cat_box[2] and cat_box[1] <= y < cat_box[3]
    print(f"Grad-CAM peak at (x={x}, y={y}): {'inside' if inside else 'outside'} the cat's box")
    if resnet_genuine:
        assert inside
    else:
        print("weights not genuine: 'the peak is inside the box' is not asserted")

# %% [markdown]
# The reference implementation, `pytorch-grad-cam` (if installed: `pip install grad-cam`), scales
# each map to $[0, 1]$ at the layer's resolution, resizes it bilinearly and scales it to
# $[0, 1]$ again; cvlib's map scaled the same way matches it.

# %%
try:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
except ImportError:
    GradCAM = None
    print("pytorch-grad-cam is not installed: comparison skipped (pip install grad-cam)")
if resnet is not None and GradCAM is not None:
    with GradCAM(model=resnet, target_layers=[resnet.layer4]) as reference:
        theirs = torch.from_numpy(reference(input_tensor=cat_input, targets=[ClassifierOutputTarget(TIGER_CAT)]))
    def to_unit(m):  # pytorch-grad-cam's scaling: m - min, then / max
        m = m - m.amin()
        return m / (m.amax() + 1e-7)

    ours = to_unit(explain.upsample_map(to_unit(small_grad_cam), cat_photo.shape[1:])).cpu()
    difference = (ours - theirs).abs().max().item()
    print(f"max |cvlib - pytorch-grad-cam| = {difference:.1e} (maps in [0, 1])")
    assert difference < 1e-2

# %% [markdown]
# ## Summary
#
# - Filters, nearest neighbours and PCA show that the feature space groups scenes by class
#   (nearest neighbour of the same class far more often than in pixel space).
# - On a GAP + FC network Grad-CAM at the last layer **is** ReLU(CAM)/Z (correlation 1,
#   ratio exactly $Z = 64$); Grad-CAM also works at any other layer.
# - Against the object masks, CAM/Grad-CAM give the best regions (IoU) and pass the
#   wrong-class sanity check; guided backprop wins the pointing game but fails both sanity
#   checks (wrong class, random weights): its map shows the object's edges, not the decision.
#   SmoothGrad's score depends on its number of noisy copies.
# - Gradient ascent on the input makes images the network is sure about, and perturbations
#   of a few grey levels (the iterative attack with $\epsilon = 8/255$) flip every prediction.
# - Attention rollout composes attention through the layers and residuals; on the trained ViT
#   its map and the last layer's CLS attention are scored like the CNN's maps above.
# - Notebook 11 continues: the same maps under cascading weight randomisation (Spearman rank
#   correlation) and deletion / insertion curves (faithfulness), in one scoring table; feature
#   inversion, t-SNE, style transfer and network dissection.
#
# ## Exercises
#
# 1. Score Grad-CAM at every layer `features.0` ... `features.6`: where is the best IoU?
# 2. Add a tolerance of 4 pixels (half a feature cell) to the pointing game
#    (`pointing_game(maps, masks, tolerance=4)`): does CAM catch up with saliency?
# 3. Score the maps of the *wrong* classes: which methods are class-discriminative?
# 4. Occlusion with patch 32: why does the map become almost uniform?
# 5. Train `SmallCNN` a few steps on FGSM images (adversarial training) and measure the accuracy
#    under attack again.

# %% [markdown]
# ## Your turn: implement it
#
# Write the visualizations yourself: `saliency`, `cam`, `grad_cam` and `attention_rollout`. Each
# function has cvlib's signature and docstring; `check(name, fn)` runs it against cvlib's version
# on hand-picked edge cases (empty inputs, ties, thresholds at the boundary, non-contiguous
# tensors) and on seeded random cases, gradients included where the function is trained through.
# It prints `NAME: N cases passed`, or raises an `AssertionError` with the smallest failing
# input, the expected and the actual output and, when it recognises one, the classic mistake. A
# function that still raises `NotImplementedError` gets `NAME: not implemented yet`.
#
# In `notebooks/09_visualizing_cnns.ipynb` the solutions are filled in;
# `assignments/09_visualizing_cnns.ipynb` (written by `make assignments`) has a stub in their
# place. Nothing above uses these cells.

# %%
import torch
import torch.nn.functional as F

from cvlib.exercises import check


# %% nbgrader={"grade": false, "grade_id": "saliency", "locked": false, "schema_version": 3, "solution": true}
def saliency(model, images, target=None):
    """Vanilla saliency ``M = max_c |dS / dI_c|`` of the class score (logit) ``S`` of ``target``
    (the predicted class when None; an int or one class per image), with the model in eval
    mode: ``images [B, 3, H, W]`` -> ``[B, H, W]``."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %%
check("saliency", saliency)


# %% nbgrader={"grade": false, "grade_id": "cam", "locked": false, "schema_version": 3, "solution": true}
def cam(model, images, target=None, features="features", fc="fc", upsample=True):
    """CAM ``M = sum_k w_k^c A^k`` (signed) of a GAP + FC network in eval mode: ``A [B, K, h, w]``
    is the output of the submodule named ``features``, ``w^c`` the row of the linear layer
    ``fc`` for class ``c = target`` (predicted when None). ``[B, 3, H, W]`` -> ``[B, H, W]``,
    resized bilinearly (``align_corners=False``), or ``[B, h, w]`` when ``upsample=False``."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %%
check("cam", cam)


# %% nbgrader={"grade": false, "grade_id": "grad_cam", "locked": false, "schema_version": 3, "solution": true}
def grad_cam(model, images, target=None, layer="features", upsample=True):
    """Grad-CAM ``ReLU(sum_k alpha_k A^k)`` with ``alpha_k`` the spatial mean of ``dS / dA^k``,
    ``A`` the output of the submodule named ``layer`` and ``S`` the logit of ``target``
    (predicted when None), model in eval mode. ``[B, 3, H, W]`` -> ``[B, H, W]`` (bilinear,
    ``align_corners=False``), or ``[B, h, w]`` when ``upsample=False``."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %%
check("grad_cam", grad_cam)


# %% nbgrader={"grade": false, "grade_id": "attention_rollout", "locked": false, "schema_version": 3, "solution": true}
def attention_rollout(attentions, residual=0.5, head_fusion="mean"):
    """Attention rollout ``[B, T, T]`` of a list of attentions ``[B, heads, T, T]``, one per
    layer: fuse the heads (``"mean"`` or ``"max"``), add the residual,
    ``residual * I + (1 - residual) * A``, renormalise the rows, and multiply the layers, each
    new one on the left: ``R = A_L ... A_2 A_1``."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %%
check("attention_rollout", attention_rollout)
