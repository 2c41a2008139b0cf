"""cvlib.train: the loop learns for each kind of model, records history, handles bad input."""

import copy
import random
import time
import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import cvlib.train
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


def _disturb(seed: int) -> None:
    """Put every global random generator in a different state, as other code would."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_seed_makes_a_run_reproducible_on_its_own():
    """The same seed on models with the same weights gives the same run whatever the global
    random state was before (fit seeds before the loader shuffles); another seed, another run."""
    model = SmallCNN(3, 4)

    def run(seed, disturbance):
        _disturb(disturbance)
        return fit(copy.deepcopy(model), _loader(64, 16), loss_fn=nn.functional.cross_entropy,
                   max_steps=3, device="cpu", progress=False, seed=seed)["loss"]

    a = run(1, disturbance=11)
    assert a == run(1, disturbance=22) and len(a) == 3
    assert a != run(2, disturbance=11)


def test_grad_clip_bounds_the_step():
    """With SGD(lr=1) a step moves the parameters by minus the clipped gradient: its norm is
    ``grad_clip`` when the gradient is larger."""
    model = nn.Linear(4, 3)
    batch = [(torch.full((8, 4), 10.0), torch.zeros(8, dtype=torch.int64))]
    for clip in (0.01, 0.1, None):
        clipped = copy.deepcopy(model)
        before = torch.cat([p.detach().flatten() for p in clipped.parameters()])
        fit(clipped, batch, loss_fn=nn.functional.cross_entropy, device="cpu", progress=False,
            optimizer=torch.optim.SGD(clipped.parameters(), lr=1.0), grad_clip=clip)
        after = torch.cat([p.detach().flatten() for p in clipped.parameters()])
        step = (after - before).norm().item()
        if clip is None:
            assert step > 1.0  # the raw gradient is large
        else:
            assert step == pytest.approx(clip, rel=1e-3)


def test_max_steps_and_time_limit(monkeypatch):
    h = fit(SmallCNN(3, 4), _loader(64, 16), loss_fn=nn.functional.cross_entropy, epochs=50,
            time_limit=1e-9, device="cpu", progress=False)
    assert len(h["loss"]) == 1
    # A clock that advances 0.1 s per reading (one at the start, one after each step), so the
    # test does not depend on how fast this machine is: step k ends at 0.1 k seconds, and a
    # 0.55 s limit stops after step 5, the last one whose successor would still end in time
    # being step 4 (0.4 + 0.1 <= 0.55) and the first that would not being step 5 (0.6 > 0.55).
    clock = iter(0.1 * k for k in range(10_000))
    monkeypatch.setattr(cvlib.train, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    h = fit(SmallCNN(3, 4), _loader(64, 16), loss_fn=nn.functional.cross_entropy, epochs=50,
            time_limit=0.55, device="cpu", progress=False)
    assert h["step"] == [1, 2, 3, 4, 5]
    assert h["time"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


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


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"grad_clip": -1}, ValueError, "grad_clip must be a number > 0"),
        ({"grad_clip": 0}, ValueError, "grad_clip must be a number > 0"),
        ({"grad_clip": float("nan")}, ValueError, "grad_clip"),
        ({"seed": -1}, ValueError, "seed must be an int"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
        ({"lr": 0}, ValueError, "lr must be a number > 0"),
        ({"epochs": 1.5}, TypeError, "epochs must be an int"),
        ({"time_limit": -1}, ValueError, "time_limit"),
    ],
)
def test_bad_fit_arguments_name_the_argument(kwargs, error, match):
    model = SmallCNN(3, 4)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=match):
        fit(model, _loader(16, 8), loss_fn=nn.functional.cross_entropy, device="cpu", progress=False,
            **kwargs)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing trained


def test_empty_loader_raises():
    with pytest.raises(ValueError, match="loader is empty"):
        fit(SmallCNN(3, 4), [], loss_fn=nn.functional.cross_entropy, device="cpu", progress=False)
    with pytest.raises(ValueError, match="loader yielded no batch"):  # no len(): found while iterating
        fit(SmallCNN(3, 4), iter([]), loss_fn=nn.functional.cross_entropy, device="cpu", progress=False)


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


class _Sleeper(nn.Module):
    """A stand-in detector that takes ``slow`` seconds per call in the first timed pass (calls
    2 and 3, after the warm-up) and ``fast`` seconds otherwise; it records each batch size."""

    def __init__(self, slow: float, fast: float):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.slow, self.fast, self.calls = slow, fast, []

    def forward(self, images):
        self.calls.append(len(images))
        time.sleep(self.slow if len(self.calls) in (2, 3) else self.fast)
        return [{} for _ in images]


def test_seconds_per_image_is_the_best_pass_per_image():
    model = _Sleeper(slow=0.1, fast=0.03)
    seconds = seconds_per_image(model, [torch.zeros(3, 8, 8)] * 2, repeats=2)
    assert model.calls == [1] * 5  # a warm-up, then 2 passes of one image per call
    # the second pass, per image: not the mean of the passes (0.065), not per pass (0.06 or more)
    assert 0.03 <= seconds < 0.055


def test_seconds_per_image_restores_the_thread_count_even_on_error():
    torch.set_num_threads(2)
    try:
        seconds_per_image(_Sleeper(0.0, 0.0), [torch.zeros(3, 8, 8)], repeats=1, threads=1)
        assert torch.get_num_threads() == 2

        class Failing(_Sleeper):
            def forward(self, images):
                assert torch.get_num_threads() == 1  # timed with the threads asked for
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            seconds_per_image(Failing(0.0, 0.0), [torch.zeros(3, 8, 8)], threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


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
