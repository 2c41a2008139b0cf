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
# # 11 · Understanding networks: inversion, embeddings, style, and which explanations to trust
#
# Notebook 09 drew explanation maps and scored them against object masks. This one continues
# the lecture in two directions.
#
# **What do the features keep?**
# - **Feature inversion** (Mahendran & Vedaldi 2015): the image whose layer-$l$ features match
#   a given image's, $x^* = \arg\min_x \lVert\phi_l(x) - \phi_l(I)\rVert^2 / \lVert\phi_l(I)\rVert^2
#   + \lambda\,\mathrm{TV}(x)$.
# - **t-SNE next to PCA**: two 2-D pictures of the same feature space.
# - **Gram matrices** $G = F F^\top / hw$ (Gatys et al.): which channels fire together, not
#   where; matching them synthesizes a texture, and adding a content term transfers a style.
# - **Network dissection** (Bau et al. 2017): which units fire on which shape.
#
# **Do the maps mean what they seem to?** A map can look right and still not explain the model.
# - **Sanity checks** (Adebayo et al. 2018): destroy the model's weights layer by layer, from
#   the top; a map that explains the model must change (Spearman rank correlation with the
#   trained model's map falls towards 0).
# - **Faithfulness** (Petsiuk et al. 2018): delete the pixels in the map's order and watch the
#   class probability; a faithful map makes it fall faster than a random order (**deletion**
#   curve, lower area is better) and, inserting pixels into a blurred image, rise faster
#   (**insertion**, higher is better).
#
# Everything is in `cvlib.explain` (`inversion`, `style`, `dissection`, `sanity`,
# `faithfulness`), tested, and leaves the model as it found it.

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
import skimage.data
import torch
import torch.nn.functional as F
from sklearn.manifold import TSNE

from cvlib import explain, metrics, recipes, runtime, viz, weights, widgets
from cvlib.data import CLASSES, held_out_classification
from cvlib.explain import dissection, faithfulness, inversion, sanity, style

device = runtime.start(seed=0)  # the device, one CPU thread, the seeds

# %% [markdown]
# ## The network and the held-out scenes
#
# The same model and scenes as notebook 09: `SmallCNN` (seven conv-BN-ReLU layers, global
# average pooling, one linear layer `fc`), shipped as `shapes_cnn`, and 100 held-out scenes
# with their object masks.

# %%
model = recipes.load_model("shapes_cnn", device=device)
N = 100
images, labels, masks = held_out_classification(N, device)  # ShapesClassification(N, seed=1)
with torch.no_grad():
    accuracy = metrics.accuracy(model(images), labels)
print(f"held-out accuracy {accuracy:.3f}")
assert accuracy > 0.95

# %% [markdown]
# ## 1. Two pictures of a feature space: PCA and t-SNE
#
# PCA projects linearly on the two directions of largest variance; t-SNE places points so that
# each point's *neighbours* stay neighbours, at the cost of distances between groups (which it
# does not preserve: the gaps between t-SNE's clusters mean nothing). For the features of each
# layer from `features.2` to `features.6` (averaged over positions) we measure, in the full
# feature space and in each 2-D picture, how often a point's 5 nearest neighbours share its
# class.

# %%
flat_labels = labels.cpu()
agreement, embeddings = {}, {}
for layer in ["features.2", "features.3", "features.4", "features.5", "features.6"]:
    features = explain.layer_features(model, images, layer).cpu()
    projection, _ = explain.pca(features, 2)
    embedding = torch.from_numpy(TSNE(2, perplexity=20, init="pca", random_state=0).fit_transform(features.numpy()))
    embeddings[layer] = {"PCA": projection, "t-SNE": embedding}
    agreement[layer] = {name: explain.neighbour_agreement(points, flat_labels, k=5)
                        for name, points in [("features", features), ("PCA", projection), ("t-SNE", embedding)]}
print(f"{'layer':11s} {'features':>9s} {'PCA 2-d':>8s} {'t-SNE 2-d':>10s}   (5-NN class agreement)")
for layer, row in agreement.items():
    print(f"{layer:11s} {row['features']:9.3f} {row['PCA']:8.3f} {row['t-SNE']:10.3f}")
assert all(row["t-SNE"] >= row["PCA"] - 0.02 for row in agreement.values())
assert agreement["features.5"]["t-SNE"] > agreement["features.5"]["PCA"] + 0.1

fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
for ax, (name, points) in zip(axes, embeddings["features.5"].items()):
    for c, cls in enumerate(CLASSES):
        keep = flat_labels == c
        ax.scatter(*points[keep].T, s=8, color=viz.class_color(c + 1), label=cls)
    ax.set(title=f"{name} of features.5: 5-NN agreement {agreement['features.5'][name]:.2f}",
           xlabel=f"{name} 1", ylabel=f"{name} 2", xticks=[], yticks=[])
    ax.title.set_fontsize(9)
axes[0].legend(fontsize=8, title="class", title_fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# t-SNE keeps a point's neighbours about as well as the full feature space does, at every
# layer; PCA, which must squeeze 128 dimensions onto a plane linearly, loses many of them in
# the middle layers (at `features.5`) and catches up only at the last layer, where the classes
# are separated along a few directions. Neither picture says more than the features already
# do, and t-SNE's also depends on its perplexity (try `perplexity=5`).
#
# ## 2. Feature inversion: what a layer keeps
#
# Two scenes, reconstructed from the features of a shallow, a middle and the last conv layer:
# 100 Adam steps on the pixels, from grey noise, with a total-variation prior.

# %%
layers = ["features.0", "features.2", "features.4", "features.6"]
originals = images[:2]
reconstructions, pixel_error = {}, {}
for layer in layers:
    reconstructions[layer], feature_error = inversion.invert_features(model, originals, layer, steps=100)
    pixel_error[layer] = (reconstructions[layer] - originals).pow(2).mean().item()
    print(f"{layer}: feature error {feature_error.mean():.4f} (relative), pixel MSE {pixel_error[layer]:.4f}")

fig, axes = plt.subplots(2, 5, figsize=(7.5, 3.3))
for row, b in enumerate(range(2)):
    viz.show_image(axes[row, 0], originals[b].cpu(), "original" if row == 0 else None)
    for ax, layer in zip(axes[row, 1:], layers):
        viz.show_image(ax, reconstructions[layer][b].cpu(), f"from {layer}" if row == 0 else None)
fig.suptitle("images reconstructed from one layer's features (pixel MSE grows with depth)", fontsize=9)
plt.show()
errors = [pixel_error[layer] for layer in layers]
assert errors[0] < errors[1] < errors[3] and errors[0] < errors[2] < errors[3], errors

# %% [markdown]
# The first layer keeps the image almost exactly (its 16 channels of 3x3 filters are nearly
# invertible); the last conv layer, after three stride-2 steps, keeps the class and the rough
# place of the object, and the reconstruction invents the rest: the error grows with depth.
#
# ## 3. Gram matrices: texture and style
#
# A **Gram matrix** $G_l = F_l F_l^\top / (h w)$ of the channels of layer $l$ keeps which
# features co-occur and forgets where. Matching the Gram matrices of the first four layers,
# from noise, synthesizes a texture; adding a content term at `features.4` transfers a
# photograph's "style" onto another (scikit-image's sample photos). The network is our small
# CNN trained on synthetic shapes, not an ImageNet VGG: its early filters see colours and
# edges, so the style it can carry is colour and stroke, and the result is rougher than the
# lecture's pictures. The losses are relative (1 = as far as a blank image).

# %%
def photo(name, size):
    image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float() / 255
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0].to(device)


content, style_image = photo("chelsea", (96, 144)), photo("coffee", (96, 128))
style_layers = ["features.0", "features.1", "features.2", "features.3"]
texture, texture_history = style.synthesize_texture(model, style_image, (64, 64), style_layers, steps=100)
stylized, history = style.style_transfer(model, content, style_image, "features.4", style_layers, steps=100)
# the content loss of the style photo itself (resized to the content's size), for comparison
content_features, style_features = (explain.layer_features(model, x[None], "features.4", pool=False)
                                    for x in (content, F.interpolate(style_image[None], size=content.shape[1:])[0]))
style_photo_loss = ((style_features - content_features).pow(2).sum() / content_features.pow(2).sum()).item()
print(f"texture: style loss {texture_history['style'][0]:.3f} -> {texture_history['style'][-1]:.4f}")
print(f"transfer: style loss {history['style'][0]:.3f} -> {history['style'][-1]:.4f}; "
      f"content loss {history['content'][0]:.3f} -> {history['content'][-1]:.3f} "
      f"(the coffee photo itself: {style_photo_loss:.3f})")
assert texture_history["style"][-1] < 0.05 * texture_history["style"][0]
assert history["style"][-1] < 0.05 * history["style"][0]
assert history["content"][-1] < style_photo_loss

fig, axes = plt.subplots(1, 5, figsize=(10, 2.4), gridspec_kw={"width_ratios": [1.5, 1.33, 1, 1.5, 1.6]})
for ax, image, title in zip(axes, [content, style_image, texture, stylized],
                            ["content", "style", "texture from noise", "content in the style"]):
    viz.show_image(ax, image.cpu(), title)
axes[4].semilogy(history["style"], label="style (transfer)")
axes[4].semilogy(history["content"][1:], label="content (transfer)")
axes[4].semilogy(texture_history["style"], label="style (texture)", linestyle="--")
axes[4].set(xlabel="step", ylabel="relative loss")
axes[4].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# The style loss falls by more than 20x in 100 steps, while the content loss stays below the
# style photo's own: the result is still the cat, in the coffee photo's colours and strokes.
# Gatys' method needs hundreds of gradient steps per image; **fast style transfer** (Johnson et
# al. 2016) trains a feed-forward network once, on many content images, to minimise the same
# loss for one style, and then stylizes an image in one forward pass.
#
# ### On real photographs: style transfer with a pretrained VGG-16
#
# Gatys et al. used an ImageNet VGG. The same `style.style_transfer` on torchvision's
# **VGG-16** (loaded by `cvlib.pretrained`: a 527.8 MB download, most of it the classifier
# layers we do not use, cached afterwards), cut after `relu5_1`, with ImageNet normalisation as
# its first layer so that it reads images in [0, 1]. Gatys' layers: the style at the ReLU after
# conv1_1, conv2_1, conv3_1, conv4_1 and conv5_1, the content after conv4_2. Only 20 steps
# (5 to 8 s on one busy CPU thread, as measured), so the result is a start, not a painting.
# That the style loss falls holds for any weights and is asserted always; that the result keeps
# the cat closer than the coffee photo does (content loss) is asserted only with the genuine
# weights. Offline, one line says why the part is skipped.

# %%
from collections import OrderedDict

import torchvision.transforms as T

from cvlib import pretrained
from cvlib.data import photos

vgg, vgg_genuine, _ = pretrained.load("vgg16")
if vgg is not None:
    vgg_preprocess = pretrained.weights_of("vgg16").transforms()  # ImageNet's mean and std
    vgg_features = torch.nn.Sequential(OrderedDict(  # up to relu5_1, reading images in [0, 1]
        normalize=T.Normalize(vgg_preprocess.mean, vgg_preprocess.std),
        features=vgg.features[:26])).to(device)
    gatys_style = {"relu1_1": "features.1", "relu2_1": "features.6", "relu3_1": "features.11",
                   "relu4_1": "features.18", "relu5_1": "features.25"}
    gatys_content = "features.20"  # relu4_2
    cat_photo = photos.load("chelsea", max_side=128).to(device)  # [3, 85, 128] in [0, 1]
    coffee_photo = photos.load("coffee", max_side=128).to(device)
    vgg_stylized, vgg_history = style.style_transfer(vgg_features, cat_photo, coffee_photo, gatys_content,
                                                     list(gatys_style.values()), steps=20, lr=0.02)
    cat_target, coffee_at_content = (explain.layer_features(vgg_features, x[None], gatys_content, pool=False)
                                     for x in (cat_photo, coffee_photo))
    coffee_content_loss = ((coffee_at_content - cat_target).pow(2).sum() / cat_target.pow(2).sum()).item()
    print(f"VGG-16: style loss {vgg_history['style'][0]:.3f} -> {vgg_history['style'][-1]:.4f}; "
          f"content loss {vgg_history['content'][0]:.3f} -> {vgg_history['content'][-1]:.3f} "
          f"(the coffee photo: {coffee_content_loss:.3f})")
    assert vgg_history["style"][-1] < 0.5 * vgg_history["style"][0]
    if vgg_genuine:
        assert vgg_history["content"][-1] < coffee_content_loss
    else:
        print("weights not genuine: 'the content loss stays below the coffee photo's' is not asserted")

    fig, axes = plt.subplots(1, 4, figsize=(10, 2.4), gridspec_kw={"width_ratios": [1.5, 1.5, 1.5, 1.6]})
    result_title = "VGG-16, 20 steps" + ("" if vgg_genuine else "\n(weights not genuine)")
    for ax, image, title in zip(axes, [cat_photo, coffee_photo, vgg_stylized],
                                ["content", "style", result_title]):
        viz.show_image(ax, image.cpu(), title)
    axes[3].semilogy(vgg_history["style"], label="style")
    axes[3].semilogy(vgg_history["content"][1:], label="content")
    axes[3].set(xlabel="step", ylabel="relative loss")
    axes[3].legend(fontsize=7)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 4. Sanity checks: does the map depend on the model?
#
# Cascading randomisation: re-initialise `fc`, then `features.6`, then `features.5`, ... down
# to the first layer, and after each step compare every method's maps (of the true class, on 24
# scenes) with the trained model's by Spearman rank correlation.

# %%
S = 24
sample, sample_labels, sample_masks = images[:S], labels[:S], masks[:S]
methods = {
    "saliency": lambda m: explain.saliency(m, sample, sample_labels),
    "SmoothGrad": lambda m: explain.smoothgrad(m, sample, sample_labels, samples=8),
    "guided backprop": lambda m: explain.guided_backprop(m, sample, sample_labels).abs().amax(dim=1),
    "Grad-CAM": lambda m: explain.grad_cam(m, sample, sample_labels),
    "CAM": lambda m: explain.cam(m, sample, sample_labels),
}
trained_maps = {name: method(model) for name, method in methods.items()}
cascade = ["fc"] + [f"features.{i}" for i in range(6, -1, -1)]
correlation = {name: [] for name in methods}
damaged_maps = {}
for layer, damaged in sanity.cascading_randomization(model, cascade):
    for name, method in methods.items():
        maps = method(damaged)
        correlation[name].append(sanity.rank_correlation(trained_maps[name], maps).nanmean().item())
        damaged_maps[name, layer] = maps

fig, ax = plt.subplots(figsize=(6, 3))
for name, values in correlation.items():
    ax.plot(range(len(cascade)), values, marker="o", label=name)
ax.axhline(0, color="grey", linewidth=0.8)
ax.set(xticks=range(len(cascade)), xlabel="layers re-initialised, from the top down to ...",
       ylabel="Spearman rank correlation\nwith the trained model's map", ylim=(-1, 1))
ax.set_xticklabels(cascade, rotation=30, fontsize=8)
ax.legend(fontsize=7, ncol=2)
ax.set_title(f"cascading model-parameter randomisation ({S} scenes)", fontsize=9)
plt.show()
for name, values in correlation.items():
    print(f"{name:16s} " + " ".join(f"{v:+.2f}" for v in values))

# %%
fig, axes = plt.subplots(len(methods), 4, figsize=(6.4, 7.6))
shown = ["fc", "features.6", "features.3", "features.0"]
for row, name in zip(axes, methods):
    columns = [("trained", trained_maps[name])] + [(layer, damaged_maps[name, layer]) for layer in shown[1:]]
    for ax, (layer, maps) in zip(row, columns):
        scaled = (maps[0] - maps[0].min()) / (maps[0].max() - maps[0].min()).clamp(min=1e-12)
        image = ax.imshow(scaled.cpu(), cmap="inferno", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[])
        if name == "saliency":
            ax.set_title(layer if layer == "trained" else f"random down to\n{layer}", fontsize=8)
    row[0].set_ylabel(name, fontsize=8)
fig.colorbar(image, ax=axes, shrink=0.5, label="map, min-max scaled per panel")
fig.suptitle("one scene's maps as the model is destroyed", fontsize=9)
plt.show()

# %% [markdown]
# After **only the classifier** `fc` is re-initialised, the model's decision is destroyed, yet
# the guided-backprop map keeps a rank correlation of about 0.9 with the trained one: it shows
# the image's edges, which every ReLU network passes back whatever its classifier says (this
# is Adebayo et al.'s finding). Grad-CAM and CAM change at once (they are built from the
# classifier's weights or gradients). Plain saliency changes when the last conv layers are
# randomised. SmoothGrad stays correlated even with *every* layer random: averaging gradients
# of noisy copies smooths towards the image's own structure. We assert the claim as the
# average correlation over the first four stages (down to `features.4`):

# %%
first_stages = {name: float(np.mean(values[:4])) for name, values in correlation.items()}
print({name: round(v, 2) for name, v in first_stages.items()})
assert first_stages["guided backprop"] > first_stages["saliency"] + 0.2
assert first_stages["guided backprop"] > first_stages["Grad-CAM"] + 0.2
assert correlation["guided backprop"][0] > 0.7 and correlation["Grad-CAM"][0] < 0.3

# %% [markdown]
# ### Label randomisation
#
# Adebayo et al.'s second check: the same architecture trained by the same recipe (AdamW,
# batches of 64) on labels shuffled once by a seeded permutation, until it has memorised them
# (256 of the training scenes, 40 passes), shipped as `shapes_cnn_random_labels`. It can learn
# nothing true about the shapes; a map that explains
# what the model learned must differ from the trained model's. Its recorded metrics: the
# accuracy on its shuffled training labels (how much it memorised) and on held-out scenes with
# the true labels (chance is 1/3). On the same 24 scenes, each method's map of the true class
# is compared with the trained model's, scene by scene.

# %%
random_label_model = recipes.load_model("shapes_cnn_random_labels", device=device)
print("random-label model:", weights.load("shapes_cnn_random_labels")["meta"]["metrics"])
random_label_maps = {name: method(random_label_model) for name, method in methods.items()}
label_correlation = {name: sanity.rank_correlation(trained_maps[name], random_label_maps[name])
                     for name in methods}


def paired_difference(a, b):
    """Mean over scenes of ``a - b`` (scenes where both are defined) and its standard error."""
    difference = (a - b)[~(a - b).isnan()]
    return difference.mean().item(), (difference.std() / len(difference) ** 0.5).item()


for name, r in label_correlation.items():
    print(f"{name:16s} rank correlation with the trained model's map {r.nanmean():+.2f}")
for other in ("saliency", "guided backprop", "Grad-CAM", "CAM"):
    mean, error = paired_difference(label_correlation["SmoothGrad"], label_correlation[other])
    print(f"SmoothGrad - {other}: {mean:+.2f} +- {error:.2f} (standard error over {S} scenes)")
gbp_fc_random = sanity.rank_correlation(trained_maps["guided backprop"], damaged_maps["guided backprop", "fc"])
fc_minus_labels = paired_difference(gbp_fc_random, label_correlation["guided backprop"])
print(f"guided backprop, fc re-initialised - labels random: {fc_minus_labels[0]:+.2f} +- {fc_minus_labels[1]:.2f}")

fig, axes = plt.subplots(2, len(methods), figsize=(8, 3.6))
for column, name in enumerate(methods):
    rows = [("trained", trained_maps[name]), ("random labels", random_label_maps[name])]
    for row, (title, maps) in enumerate(rows):
        scaled = (maps[0] - maps[0].min()) / (maps[0].max() - maps[0].min()).clamp(min=1e-12)
        image = axes[row, column].imshow(scaled.cpu(), cmap="inferno", vmin=0, vmax=1)
        axes[row, column].set(xticks=[], yticks=[])
        axes[0, column].set_title(name, fontsize=8)
        axes[row, 0].set_ylabel(title, fontsize=8)
fig.colorbar(image, ax=axes, shrink=0.7, label="map, min-max scaled per panel")
fig.suptitle("one scene: the trained model's maps and the random-label model's", fontsize=9)
plt.show()

# %% [markdown]
# The claims, each asserted with a margin of three standard errors of the per-scene
# difference: SmoothGrad's map stays more similar to the trained model's than every other
# method's; and guided backprop, unmoved when only `fc` was re-initialised, moves here.

# %%
for other in ("saliency", "guided backprop", "Grad-CAM", "CAM"):
    mean, error = paired_difference(label_correlation["SmoothGrad"], label_correlation[other])
    assert mean > 3 * error, (other, mean, error)
assert fc_minus_labels[0] > 3 * fc_minus_labels[1]

# %% [markdown]
# What this measurement shows, next to the paper:
# - The model memorised its shuffled labels (training accuracy 1.0, held-out accuracy on the
#   true labels at chance), as in the paper. Saliency, guided backprop, Grad-CAM and CAM all
#   pass this check: their maps are nearly unrelated to the trained model's (rank correlation
#   about 0.1 or less), so they depend on what the network learned from its labels.
# - **Guided backprop passes here although it failed the model-randomisation check**: with
#   only `fc` re-initialised its map kept a correlation of about 0.9, because the features
#   were still the trained ones. A network trained on random labels learned other features,
#   and guided backprop shows the edges *those* features respond to. Its insensitivity is to
#   the classifier, not to the whole network.
# - **SmoothGrad fails it** on these scenes (about 0.6): averaging the gradient of noisy copies
#   leaves the object's outline, which any network trained on these images responds to. This
#   is measured on one small network and flat-coloured shapes; whether it holds for large
#   networks and photographs is not tested here.

# %% [markdown]
# ## 5. Faithfulness: deletion and insertion
#
# Delete the pixels of each scene (replace them by grey), most important first by each map, in
# 10 steps, and record the probability of the true class; insert them in the same order into a
# blurred copy. A random order is the baseline. Occlusion (notebook 09) is included: its map
# is made by deleting patches, so it is the method closest to what deletion measures.

# %%
generator = torch.Generator().manual_seed(0)
maps_to_score = dict(trained_maps)
maps_to_score["occlusion"] = explain.occlusion(model, sample, sample_labels, patch=8, stride=8)
maps_to_score["random"] = torch.rand(sample.shape[0], 64, 64, generator=generator).to(device)
curves = {name: (faithfulness.deletion_curve(model, sample, maps, sample_labels, steps=10),
                 faithfulness.insertion_curve(model, sample, maps, sample_labels, steps=10))
          for name, maps in maps_to_score.items()}

fig, (ax_del, ax_ins) = plt.subplots(1, 2, figsize=(7, 3))
fractions = np.linspace(0, 1, 11)
for name, (deletion, insertion) in curves.items():
    style_kw = {"color": "grey", "linestyle": "--"} if name == "random" else {}
    ax_del.plot(fractions, deletion.mean(0).cpu(), label=name, **style_kw)
    ax_ins.plot(fractions, insertion.mean(0).cpu(), label=name, **style_kw)
ax_del.set(title="deletion (lower is better)", xlabel="fraction of pixels replaced by grey", ylabel="p(true class)")
ax_ins.set(title="insertion (higher is better)", xlabel="fraction of pixels put back", ylabel="p(true class)")
for ax in (ax_del, ax_ins):
    ax.title.set_fontsize(9)
ax_ins.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The scoring table: localisation, sanity, faithfulness
#
# Pointing game and IoU against the object mask (notebook 09's columns), the sanity checks
# (rank correlation with the trained model's map after `fc` is re-initialised, and with the
# random-label model's map: **lower** means the map depends on what the model learned), and
# the areas under the deletion and insertion curves.

# %%
auc = {name: (faithfulness.area_under_curve(d).mean().item(), faithfulness.area_under_curve(i).mean().item())
       for name, (d, i) in curves.items()}
print(f"{'method':16s} {'pointing':>8s} {'IoU':>6s} {'fc random r':>11s} {'labels random r':>15s} "
      f"{'deletion':>9s} {'insertion':>10s}")
for name, maps in maps_to_score.items():
    pointing = explain.pointing_game(maps, sample_masks).float().mean().item()
    iou = explain.map_iou(maps, sample_masks).mean().item()
    r = f"{correlation[name][0]:+11.2f}" if name in correlation else f"{'-':>11s}"
    r_labels = f"{label_correlation[name].nanmean():+15.2f}" if name in label_correlation else f"{'-':>15s}"
    print(f"{name:16s} {pointing:8.2f} {iou:6.3f} {r} {r_labels} {auc[name][0]:9.3f} {auc[name][1]:10.3f}")
for name in ("CAM", "Grad-CAM", "occlusion"):
    assert auc[name][0] < auc["random"][0], name  # deletes the evidence faster than chance
for name in methods:
    assert auc[name][1] > auc["random"][1], name  # every map beats chance at insertion
gradient_maps = [name for name in ("saliency", "SmoothGrad", "guided backprop") if auc[name][0] > auc["random"][0] - 0.02]
print("no better than a random order at deletion:", gradient_maps)
assert gradient_maps == ["saliency", "SmoothGrad", "guided backprop"]

# %% [markdown]
# What the table shows, and what it does not:
# - CAM, Grad-CAM and occlusion delete the evidence faster than a random order (lower deletion
#   area): by this test they are faithful.
# - The gradient maps (saliency, SmoothGrad, guided backprop) are **no better than random at
#   deletion** here: they rank the object's edges first, and greying a thin outline leaves the shape's interior, which the
#   network still recognises. At insertion every method beats random, gradients included.
# - Guided backprop's high pointing game (notebook 09) therefore says little: its map barely
#   depends on the classifier (the `fc` random column; it does depend on the features, the
#   labels random column) and does not delete the evidence.
# - All numbers are on 24 synthetic scenes with one small CNN; with grey as "deleted" (another
#   fill, e.g. the blurred image, changes them: try it).
#
# ## 6. Network dissection: which units detect which shape
#
# For every unit (channel) of the last conv layer, threshold its upsampled activation at its
# top 1% over the 100 scenes and compute the IoU of that region with the masks of each shape.
# The same for the network with every layer re-initialised, as a baseline.

# %%
trained_iou = dissection.unit_concept_iou(model, images, "features.6", masks, labels, len(CLASSES))
random_model = sanity.randomized_copy(model, cascade)
random_iou = dissection.unit_concept_iou(random_model, images, "features.6", masks, labels, len(CLASSES))
best, concept = trained_iou.max(dim=1)
detectors = {cls: int(((concept == c) & (best > 0.1)).sum()) for c, cls in enumerate(CLASSES)}
random_detectors = int((random_iou.max(dim=1).values > 0.1).sum())
print(f"units of features.6 with IoU > 0.1: {detectors} (trained), {random_detectors} (random weights)")
print("best unit per shape: " + ", ".join(f"{cls} unit {int(trained_iou[:, c].argmax())} IoU {trained_iou[:, c].max():.2f}"
                                        for c, cls in enumerate(CLASSES)))
assert all(n > 0 for n in detectors.values()) and sum(detectors.values()) > 2 * random_detectors

fig, axes = plt.subplots(1, 2, figsize=(7, 2.8))
bins = np.linspace(0, 0.35, 29)
axes[0].hist(best.cpu(), bins=bins, alpha=0.7, label="trained")
axes[0].hist(random_iou.max(dim=1).values.cpu(), bins=bins, alpha=0.7, label="random weights")
axes[0].set(xlabel="best IoU of a unit with a shape", ylabel="units of features.6")
axes[0].legend(fontsize=7)
heat = axes[1].imshow(trained_iou[best.argsort(descending=True)[:16]].T.cpu(), cmap="viridis", aspect="auto")
axes[1].set(yticks=range(len(CLASSES)), yticklabels=CLASSES, xlabel="the 16 best units (by best IoU)")
fig.colorbar(heat, ax=axes[1], label="IoU")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Explorer**: one unit's top-activation region on the scenes (orange) and the object mask
# (white outline).

# %%
activations = F.interpolate(explain.layer_features(model, images, "features.6", pool=False),
                            size=(64, 64), mode="bilinear", align_corners=False)
thresholds = torch.quantile(activations.transpose(0, 1).flatten(1).cpu(), 0.99, dim=1)
fig_unit, ax_unit = plt.subplots(figsize=(4.6, 4.6))
scene_artist = viz.show_image(ax_unit, images[0].cpu())
region_artist = ax_unit.imshow(np.zeros((64, 64, 4)))
mask_artist = ax_unit.contour(masks[0].cpu().float(), levels=[0.5], colors="white")


def show_unit(unit, scene):
    global mask_artist
    scene_artist.set_data(viz.to_numpy_image(images[scene].cpu()))
    region = (activations[scene, unit] > thresholds[unit]).cpu().numpy()
    overlay = np.zeros((64, 64, 4))
    overlay[region] = (1.0, 0.55, 0.0, 0.6)
    region_artist.set_data(overlay)
    mask_artist.remove()
    mask_artist = ax_unit.contour(masks[scene].cpu().float(), levels=[0.5], colors="white")
    c = int(concept[unit])
    ax_unit.set_title(f"unit {unit}: best {CLASSES[c]} (IoU {best[unit]:.2f}); scene: {CLASSES[labels[scene]]}",
                      fontsize=8)


_ = widgets.explore(fig_unit, show_unit, unit=widgets.int_slider("unit", 0, activations.shape[1] - 1,
                                                                 value=int(best.argmax())),
                    scene=widgets.int_slider("scene", 0, N - 1))

# %% [markdown]
# ## Summary
#
# - Feature inversion: the first layer keeps the image, the last keeps the class and rough
#   place; the reconstruction error grows with depth.
# - t-SNE keeps a point's neighbours better than PCA (5-NN class agreement), but its cluster
#   distances mean nothing.
# - Gram matrices forget position: matching them synthesizes textures and, with a content
#   term, transfers a style; the style loss falls by over 20x while the content stays. The
#   same code runs on an ImageNet VGG-16 with Gatys' layers when its weights can be had.
# - Sanity checks: guided backprop barely changes when the classifier is destroyed; Grad-CAM
#   and CAM change at once, saliency when the conv layers go. With a model trained on shuffled
#   labels, CAM and Grad-CAM change most and guided backprop least, though only moderately.
# - Faithfulness: CAM, Grad-CAM and occlusion delete the evidence faster than chance; the edge
#   maps of the gradient methods do not. A map that looks sharp is not a map that the
#   model uses.
# - Network dissection: every shape has units of the last conv layer that fire on it, far more
#   than in the same network with random weights.
#
# ## Exercises
#
# 1. Invert `features.6` with `tv_weight=0` and with `tv_weight=5`: what does the prior add?
# 2. Run the deletion curves with the blurred image as the "deleted" value instead of grey
#    (`faithfulness.blur`): does saliency still lose to random?
# 3. Cascade the randomisation from the *bottom* up (`features.0` first): which maps change first?
# 4. Style transfer with `style_layers=["features.0"]` only, then with the four layers: what
#    does each layer's Gram matrix carry?
# 5. Dissect `features.4` instead of `features.6`: fewer or more shape detectors?
