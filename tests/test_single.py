"""Single-object detection: the smooth L1 loss, the detector's contract, and that it learns."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from cvlib.data import SingleObjectDataset, collate_single_object
from cvlib.losses import single_object_loss, smooth_l1
from cvlib.models.single import SingleObjectDetector, box_params, evaluate
from cvlib.train import fit


@given(st.integers(0, 1000), st.sampled_from([0.1, 1.0, 3.0]))
def test_smooth_l1_equals_torch(seed, beta):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(5, 4, generator=g) * 3, torch.randn(5, 4, generator=g)
    torch.testing.assert_close(smooth_l1(a, b, beta), F.smooth_l1_loss(a, b, beta=beta))


def test_loss_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        smooth_l1(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="beta"):
        smooth_l1(torch.zeros(2), torch.zeros(2), beta=0)
    with pytest.raises(ValueError, match="box_loss"):
        single_object_loss({}, {}, box_loss="l3")


def test_output_contract():
    model = SingleObjectDetector(num_classes=3, image_size=32, width=4).eval()
    out = model(torch.rand(2, 3, 32, 32))
    assert out["logits"].shape == (2, 3) and out["box_params"].shape == (2, 4)
    assert ((0 <= out["box_params"]) & (out["box_params"] <= 1)).all()
    torch.testing.assert_close(box_params(out["boxes"], 32), out["box_params"])
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, 32, 32\]"):
        model(torch.rand(2, 3, 33, 32))
    with pytest.raises(ValueError, match="multiple of 8"):
        SingleObjectDetector(image_size=30)


def test_learns_in_a_few_steps():
    torch.manual_seed(0)
    model = SingleObjectDetector(num_classes=3, image_size=32, width=8)
    loader = DataLoader(SingleObjectDataset(256, image_size=32), batch_size=32, shuffle=True,
                        collate_fn=collate_single_object)
    history = fit(model, loader, loss_fn=partial(model.loss, box_weight=5.0), epochs=4, lr=2e-3,
                  device="cpu", progress=False)
    assert set(history) == {"step", "time", "loss", "loss_cls", "loss_box"}
    assert sum(history["loss"][-4:]) < 0.8 * sum(history["loss"][:4])
    for term in ("loss_cls", "loss_box"):  # both tasks learn
        assert sum(history[term][-4:]) < 0.8 * sum(history[term][:4])


class _Fixed(SingleObjectDetector):
    """Answers with given labels and boxes, batch after batch, whatever the images."""

    def __init__(self, labels, boxes):
        super().__init__(num_classes=3, image_size=32, width=2)
        self.labels, self.boxes, self.seen = labels, boxes, 0

    def forward(self, images):
        part = slice(self.seen, self.seen + len(images))
        self.seen += len(images)
        logits = torch.nn.functional.one_hot(self.labels[part], 3).float()
        return {"logits": logits, "boxes": self.boxes[part]}


def test_evaluate_scores_known_answers():
    images = torch.rand(4, 3, 32, 32)
    boxes = torch.tensor([[0.0, 0, 8, 8], [10, 0, 18, 12], [0, 20, 6, 30], [16, 16, 30, 28]])  # disjoint
    targets = {"labels": torch.tensor([0, 1, 2, 1]), "boxes": boxes}
    labels = targets["labels"].clone()
    labels[3] = (labels[3] + 1) % 3  # one wrong class out of four
    exact = evaluate(_Fixed(labels, targets["boxes"]), images, targets, batch_size=3)
    assert exact == pytest.approx({"accuracy": 0.75, "mean_iou": 1.0, "correct_detections": 0.75})
    shifted = targets["boxes"].clone()
    shifted[:, 0::2] += (shifted[:, 2:3] - shifted[:, 0:1]) / 2  # half a width right: IoU 1/3
    off = evaluate(_Fixed(labels, shifted), images, targets, batch_size=3)
    assert off == pytest.approx({"accuracy": 0.75, "mean_iou": 1 / 3, "correct_detections": 0.0})
    swapped = evaluate(_Fixed(labels, boxes.roll(1, 0)), images, targets)  # each on another's box
    assert swapped == pytest.approx({"accuracy": 0.75, "mean_iou": 0.0, "correct_detections": 0.0})
