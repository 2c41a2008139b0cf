"""Segmentation models: shapes for odd sizes, sliding window == one pass, FCN's bilinear init,
receptive fields, a 20-step run in which the loss falls, bad input."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cvlib.data import ShapesDataset, collate_segmentation
from cvlib.models.fcn import FCN, DilatedFCN, PatchClassifier, receptive_field
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


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)
