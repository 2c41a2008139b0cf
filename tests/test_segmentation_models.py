"""Segmentation models: shapes for odd sizes, sliding window == one pass, FCN's bilinear init,
receptive fields, a 20-step run in which the loss falls, bad input."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from cvlib.data import ShapesDataset, collate_segmentation
from cvlib.models.fcn import (
    FCN,
    DilatedFCN,
    PatchClassifier,
    dilated_receptive_field,
    input_gradient,
    receptive_field,
    receptive_field_coverage,
)
from cvlib.models.unet import UNet
from cvlib.ops.upsample import bilinear
from cvlib.train import fit

MODELS = {
    "unet": lambda: UNet(width=4),
    "unet_noskip": lambda: UNet(width=4, skip=False),
    "fcn": lambda: FCN(width=4),
    "dilated": lambda: DilatedFCN(width=4),
    "patch": lambda: PatchClassifier(width=4),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(64, 64), (63, 65), (17, 9)])
def test_output_is_input_sized(name, size):
    model = MODELS[name]().eval()
    assert model(torch.rand(2, 3, *size)).shape == (2, 4, *size)


@pytest.mark.parametrize("name", MODELS)
def test_bad_input(name):
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, H, W\]"):
        MODELS[name]()(torch.rand(3, 16, 16))


def test_sliding_window_equals_one_pass():
    model = PatchClassifier(width=8).eval()
    images = torch.rand(2, 3, 20, 23)
    torch.testing.assert_close(model.sliding_window(images, batch_size=97), model(images))


def test_fcn_starts_as_bilinear_upsampling():
    model = FCN(width=4).eval()
    images = torch.rand(1, 3, 64, 64)
    scores = model.score(model.features(images))  # [1, 4, 8, 8]
    expected = bilinear(scores, scale=8)
    torch.testing.assert_close(
        model(images)[..., 8:-8, 8:-8], expected[..., 8:-8, 8:-8], rtol=1e-4, atol=1e-5
    )


def test_receptive_fields():
    assert receptive_field(PatchClassifier(layers=7)) == 15
    assert receptive_field(DilatedFCN(dilations=(1, 2, 4))) == 1 + 2 * 7
    assert receptive_field(UNet(depth=2)) > receptive_field(UNet(depth=1))


@settings(max_examples=50, deadline=None)
@given(dilations=st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_receptive_field_formula_equals_the_gradient_measurement(dilations):
    torch.manual_seed(0)  # width 16: enough channels that some ReLU path reaches the outermost taps
    measured = receptive_field(DilatedFCN(width=16, dilations=dilations), size=65)
    assert measured == dilated_receptive_field(dilations)


def _lattice_fraction(dilations) -> float:
    """The gridding count, independent of gradients: the offsets a stack of 3x3 taps can sum to
    (one of -d, 0, d per layer), as a fraction of the receptive field's square."""
    offsets = {0}
    for d in dilations:
        offsets = {o + t for o in offsets for t in (-d, 0, d)}
    return (len(offsets) / (max(offsets) - min(offsets) + 1)) ** 2


@settings(max_examples=50, deadline=None)
@given(dilations=st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_receptive_field_coverage_counts_the_lattice(dilations):
    torch.manual_seed(0)
    coverage = receptive_field_coverage(DilatedFCN(width=16, dilations=dilations), size=65)
    assert coverage == pytest.approx(_lattice_fraction(dilations))


def test_gridding_equal_rates_leave_holes_hybrid_rates_do_not():
    torch.manual_seed(0)
    equal, hybrid = DilatedFCN(width=8, dilations=(2,) * 6), DilatedFCN(width=8, dilations=(1, 2, 3, 1, 2, 3))
    assert receptive_field(equal) == receptive_field(hybrid) == 25
    assert receptive_field_coverage(equal) == pytest.approx((13 / 25) ** 2)  # the even lattice only
    assert receptive_field_coverage(hybrid) == 1.0 == receptive_field_coverage(PatchClassifier(width=4))
    reached = input_gradient(equal, size=33) > 0
    assert reached[16::2, 16::2].any() and not reached[17::2].any() and not reached[:, 17::2].any()


def test_receptive_field_bad_input():
    with pytest.raises(TypeError, match="dilations"):
        dilated_receptive_field(3)
    with pytest.raises(ValueError, match="dilations"):
        dilated_receptive_field([1, 0])
    with pytest.raises(TypeError, match="model"):
        input_gradient("net")


@pytest.mark.parametrize("skip", [True, False])
def test_unet_loss_falls_in_20_steps(skip):
    torch.manual_seed(0)
    loader = DataLoader(
        ShapesDataset(160, image_size=32), batch_size=8, shuffle=True, collate_fn=collate_segmentation
    )
    history = fit(
        UNet(width=8, depth=2, skip=skip),
        loader,
        loss_fn=F.cross_entropy,
        epochs=5,
        max_steps=20,
        lr=3e-3,
        device="cpu",
        progress=False,
    )
    assert len(history["loss"]) == 20
    assert sum(history["loss"][-4:]) < 0.8 * sum(history["loss"][:4])


@pytest.mark.parametrize("build, stuff", [
    (lambda: DilatedFCN(width=8, dilations=(2, 2, 2)), False),  # the recipes' two kinds of rates
    (lambda: DilatedFCN(width=8, dilations=(1, 2, 3)), False),
    (lambda: UNet(num_classes=6, width=8, depth=2), True),  # the stuff segmenter, on stuff scenes
])
def test_dilated_and_stuff_segmenters_learn(build, stuff):
    torch.manual_seed(0)
    model = build()
    scenes = ShapesDataset(160, image_size=32, stuff=stuff)
    loader = DataLoader(scenes, batch_size=8, shuffle=True, collate_fn=collate_segmentation)
    history = fit(model, loader, loss_fn=F.cross_entropy, epochs=5, max_steps=20, lr=3e-3, device="cpu",
                  progress=False)
    assert sum(history["loss"][-4:]) < 0.8 * sum(history["loss"][:4])


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)
