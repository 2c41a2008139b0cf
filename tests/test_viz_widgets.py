"""cvlib.viz and cvlib.widgets: drawing returns artists, explorers update figures in place."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cvlib import viz, widgets  # noqa: E402
from cvlib.data import ShapesDataset  # noqa: E402


@pytest.fixture
def scene():
    return ShapesDataset(1, seed=0)[0]


def test_class_colours_are_fixed():
    assert viz.class_color(0) == viz.class_color(len(viz.PALETTE))
    assert len({viz.class_color(k) for k in range(1, 4)}) == 3


def test_colorize_semantic_and_overlay(scene):
    image, target = scene
    rgb = viz.colorize_semantic(target["semantic"])
    assert rgb.shape == (64, 64, 3)
    ys, xs = torch.nonzero(target["semantic"] == 1, as_tuple=True)
    assert np.allclose(rgb[ys[0], xs[0]], viz.class_color(1))
    over = viz.overlay_masks(image, target["masks"], target["labels"])
    assert over.shape == (64, 64, 3)
    background = ~target["masks"].any(0).numpy()
    assert np.allclose(over[background], viz.to_numpy_image(image)[background])
    with pytest.raises(ValueError, match="semantic"):
        viz.colorize_semantic(torch.zeros(2, 3, 4))


def test_draw_boxes_returns_artists(scene):
    _, target = scene
    fig, ax = plt.subplots()
    artists = viz.draw_boxes(ax, target["boxes"], target["labels"], scores=[0.9, 0.5],
                             class_names=("circle", "square", "triangle"))
    assert len(artists) == 4  # a rectangle and a caption per box
    assert artists[1].get_text() == "square 0.90"
    assert viz.draw_boxes(ax, torch.zeros(0, 4)) == []
    plt.close(fig)


def test_image_grid():
    fig, axes = viz.image_grid([torch.rand(3, 8, 8)] * 5, ncols=3)
    assert len(axes) == 6 and not axes[5].axison
    plt.close(fig)
    with pytest.raises(ValueError, match="images"):
        viz.image_grid([])


def test_explorer_updates_in_place():
    fig, ax = plt.subplots()
    artist = ax.imshow(np.zeros((4, 4)))
    calls = []

    def update(value):
        calls.append(value)
        artist.set_data(np.full((4, 4), value))

    explorer = widgets.explore(fig, update, value=widgets.slider("v", 0.0, 1.0))
    assert calls == [0.0]
    explorer.controls["value"].value = 0.5
    assert calls == [0.0, 0.5] and artist.get_array()[0, 0] == 0.5
    assert explorer.last_step_seconds is not None and explorer.values == {"value": 0.5}
    assert len(fig.axes[0].images) == 1  # the same artist, not a new figure


def test_step_moves_like_a_reader_and_wraps_around():
    fig, ax = plt.subplots()
    seen = []
    explorer = widgets.explore(fig, lambda n, kind: seen.append((n, kind)),
                               n=widgets.int_slider("n", 0, 2), kind=widgets.dropdown("k", ["a", "b"]))
    for _ in range(3):
        assert explorer.step("n") >= 0
    explorer.step("kind")
    explorer.step("kind")
    assert seen == [(0, "a"), (1, "a"), (2, "a"), (0, "a"), (0, "b"), (0, "a")]
    assert explorer in widgets.Explorer.alive()


def test_explore_needs_controls():
    fig = plt.figure()
    with pytest.raises(ValueError, match="control"):
        widgets.explore(fig, lambda: None)
    with pytest.raises(TypeError, match="value widgets"):
        widgets.explore(fig, lambda x: None, x=3)
    plt.close(fig)


def test_overlay_heatmap_covers_the_image():
    fig, ax = plt.subplots()
    image, heat = torch.rand(3, 64, 48), torch.rand(8, 6)
    artist = viz.overlay_heatmap(ax, image, heat, "t", alpha=0.4)
    picture, overlay = ax.get_images()
    assert overlay is artist and artist.get_alpha() == 0.4
    assert np.allclose(artist.get_array(), heat.numpy())
    assert picture.get_extent() == artist.get_extent() == [0, 48, 64, 0]  # the 8 x 6 map spans every pixel
    assert np.allclose(picture.get_array(), viz.to_numpy_image(image))
    plt.close(fig)
