"""cvlib.train: the loop learns for each kind of model, records history, handles bad input."""

import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from cvlib.data import ShapesClassification, collate_classification
from cvlib.models.blocks import SmallCNN
from cvlib.train import detect, fit, main, predict, seconds_per_call, seconds_per_image, to_device


def _loader(n=128, batch_size=32):
    return DataLoader(ShapesClassification(n, image_size=32), batch_size=batch_size,
                      shuffle=True, collate_fn=collate_classification)


def test_classifier_loss_falls():
    history = fit(SmallCNN(3, width=8), _loader(), loss_fn=nn.functional.cross_entropy,
                  epochs=5, lr=2e-3, device="cpu", progress=False)
    assert len(history["loss"]) == 20 == history["step"][-1]
    assert sum(history["loss"][-4:]) < sum(history["loss"][:4])


class _TwoLossModel(nn.Module):
    """A toy 'detector' in torchvision's contract: a loss dict in training mode."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, images, targets=None):
        out = self.linear(torch.stack([im.mean(dim=(1, 2)) for im in images]))
        labels = torch.stack([t for t in targets])
        return {"loss_a": nn.functional.cross_entropy(out, labels), "loss_b": out.pow(2).mean()}


def test_detection_style_loss_dict_is_summed_and_recorded():
    images = [torch.rand(3, 8, 8) for _ in range(8)]
    batches = [(images[i : i + 4], [torch.tensor(i % 2) for i in range(4)]) for i in (0, 4)]
    history = fit(_TwoLossModel(), batches, epochs=3, device="cpu", progress=False)
    assert set(history) == {"step", "time", "loss", "loss_a", "loss_b"}
    for k in range(6):
        assert history["loss"][k] == pytest.approx(history["loss_a"][k] + history["loss_b"][k])


def test_max_steps_time_limit_and_seed_reproducible():
    run = lambda: fit(SmallCNN(3, 4), _loader(64, 16), loss_fn=nn.functional.cross_entropy,
                      max_steps=3, device="cpu", progress=False, seed=1)
    torch.manual_seed(1)
    a = run()
    torch.manual_seed(1)
    b = run()
    assert a["loss"] == b["loss"] and len(a["loss"]) == 3
    h = fit(SmallCNN(3, 4), _loader(64, 16), loss_fn=nn.functional.cross_entropy, epochs=50,
            time_limit=1e-9, device="cpu", progress=False)
    assert len(h["loss"]) == 1
    h = fit(SmallCNN(3, 4), _loader(64, 16), loss_fn=nn.functional.cross_entropy, epochs=50,
            time_limit=0.5, device="cpu", progress=False)
    t = h["time"]
    assert len(t) > 2 and 2 * t[-1] - t[-2] > 0.5 >= 2 * t[-2] - t[-3]  # stopped before a late step


def test_bad_arguments():
    with pytest.raises(ValueError, match="epochs"):
        fit(SmallCNN(), _loader(), loss_fn=nn.functional.cross_entropy, epochs=0)
    with pytest.raises(ValueError, match="max_steps"):
        fit(SmallCNN(), _loader(), loss_fn=nn.functional.cross_entropy, max_steps=0)
    class NotADetector(SmallCNN):
        def forward(self, images, targets=None):
            return super().forward(images)

    with pytest.raises(TypeError, match="dict of losses"):
        fit(NotADetector(), _loader(), epochs=1, progress=False)  # no loss_fn, returns logits


def test_predict_batches_and_eval_mode():
    model = SmallCNN(3, 4)
    images = torch.rand(10, 3, 32, 32)
    out = predict(model, images, batch_size=3)
    assert out.shape == (10, 3) and not model.training
    assert torch.allclose(out, model(images), atol=1e-5)


def test_detect_batches_on_the_cpu_and_times_one_image_per_call():
    calls = []

    class Counting(nn.Module):  # a stand-in detector: one box per image, its mean as score
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, images):
            calls.append(len(images))
            return [{"boxes": torch.zeros(1, 4), "labels": torch.ones(1, dtype=torch.int64),
                     "scores": self.w * im.mean()[None]} for im in images]

    model = Counting().train()
    images = [torch.full((3, 8, 8), float(i)) for i in range(7)]
    out = detect(model, images, batch_size=3)
    assert calls == [3, 3, 1] and not model.training
    assert [d["scores"].item() for d in out] == list(range(7))
    assert not any(d["scores"].requires_grad for d in out)
    assert detect(model, []) == []
    calls.clear()
    assert seconds_per_image(model, images[:2], repeats=2) > 0
    assert calls == [1] * 5  # a warm-up, then 2 passes of one image per call


def test_to_device_recurses():
    batch = ([torch.zeros(1)], {"a": torch.ones(1), "b": 3}, "text")
    moved = to_device(batch, "cpu")
    assert moved[1]["b"] == 3 and moved[2] == "text" and torch.is_tensor(moved[0][0])


def test_cli_lists_recipes(capsys):
    assert main(["--list"]) == 0
    assert "shapes_cnn" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["no_such_recipe"])


def test_seconds_per_call_warms_up_and_keeps_the_best_pass():
    calls, pauses = [], iter([0.0] * 3 + [0.02] * 3 + [0.0] * 3)  # pass 2 is disturbed

    def fn(x):
        calls.append(x)
        if len(calls) > 1:  # the warm-up call is not timed
            time.sleep(next(pauses))

    seconds = seconds_per_call(fn, [1, 2, 3], repeats=3)
    assert calls == [1] + [1, 2, 3] * 3
    assert seconds < 0.01  # the best pass, not the mean (0.02 s per call in pass 2)
    with pytest.raises(ValueError, match="repeats"):
        seconds_per_call(fn, [1], repeats=0)
    with pytest.raises(ValueError, match="input"):
        seconds_per_call(fn, [])
