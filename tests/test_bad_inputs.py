"""Bad input never passes silently: every public function and class of cvlib, given a bad value
in one argument (a hypothesis strategy per kind: wrong type, dtype, shape, NaN / inf, out of
range), raises a ``TypeError`` or ``ValueError`` whose message names that argument.

The cases live in tests/bad_input_cases.py (bench/bad_inputs.py probes them exhaustively);
``test_every_public_callable_has_a_case`` fails when a new public function has none.
"""

from __future__ import annotations

import math

import pytest
import torch
from bad_input_cases import (
    CASES,
    EXEMPT,
    NUMBER_KINDS,
    TENSOR_KINDS,
    clear,
    covered,
    public_callables,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

# ---------------------------------------------------------------------------------------------
# Strategies: a bad value of each kind, given the valid value of the argument

NAN_OR_INF = st.sampled_from([math.nan, math.inf, -math.inf])
TEXT = st.text(max_size=4)
FRACTIONAL = st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: x != int(x))


def _spoiled_at(value: torch.Tensor, number_strategy) -> st.SearchStrategy:
    """``value`` (as float) with one element, at a drawn position, set to a drawn number."""

    def spoil(args):
        position, number = args
        bad = value.clone() if value.is_floating_point() else value.double()
        bad.reshape(-1)[position] = number
        return bad

    return st.tuples(st.integers(0, max(value.numel() - 1, 0)), number_strategy).map(spoil)


def _tensor_strategy(kind: str, v: torch.Tensor) -> st.SearchStrategy:
    strategies = {
        "list": lambda: st.sampled_from([v.tolist(), tuple(v.tolist()), v.numpy(), "x"]),
        "extra_dim": lambda: st.sampled_from([0, v.ndim]).map(v.unsqueeze),
        "fewer_dims": lambda: st.just(v.flatten()[0] if v.ndim == 1 else v[0]),
        "int": lambda: st.sampled_from([torch.int64, torch.int32, torch.int16, torch.bool]).map(v.round().to),
        "float": lambda: st.tuples(st.sampled_from([torch.float32, torch.float64]), st.floats(0.1, 0.9)).map(
            lambda a: v.to(a[0]) + a[1]
        ),
        "uint8": lambda: st.just((v * 255).to(torch.uint8)),
        "float64": lambda: st.just(v.double()),
        "nan": lambda: _spoiled_at(v, st.just(math.nan)),
        "inf": lambda: _spoiled_at(v, st.sampled_from([math.inf, -math.inf])),
        "reversed": lambda: st.integers(0, max(len(v) - 1, 0)).map(lambda i: _reverse_row(v, i)),
        "negative": lambda: st.integers(1, 1000).map(lambda k: v - v.max() - k),
        "too_big": lambda: st.integers(1000, 10**6).map(lambda k: v + k),
        "above_one": lambda: st.floats(1.01, 100.0).map(lambda k: v + k),
        "empty": lambda: st.just(v[:0]),
    }
    return strategies[kind]()  # built lazily: not every kind suits every dtype


def _reverse_row(boxes: torch.Tensor, row: int) -> torch.Tensor:
    bad = boxes.clone()
    bad[row] = boxes[row, [2, 3, 0, 1]]  # x2 < x1 and y2 < y1 (the boxes have a positive size)
    return bad


NUMBER_STRATEGIES = {
    "positive": st.one_of(st.floats(max_value=0.0, allow_nan=False), NAN_OR_INF, TEXT, st.booleans()),
    "nonneg": st.one_of(st.floats(max_value=-1e-9, allow_nan=False), NAN_OR_INF, TEXT),
    "unit": st.one_of(
        st.floats(max_value=-1e-9, allow_nan=False),
        st.floats(min_value=1.000001, allow_nan=False),
        NAN_OR_INF,
        TEXT,
    ),
    "finite": st.one_of(NAN_OR_INF, TEXT),
    "posint": st.one_of(st.integers(max_value=0), FRACTIONAL, TEXT, st.booleans()),
    "nonnegint": st.one_of(st.integers(max_value=-1), FRACTIONAL, TEXT),
    "int": st.one_of(FRACTIONAL, TEXT, st.booleans()),
    "choice": st.one_of(TEXT.map(lambda s: "zz" + s), st.integers()),
    "module": st.one_of(TEXT, st.none(), st.integers()),
    "settings": st.one_of(TEXT, st.integers(), st.dictionaries(TEXT, st.floats(0, 1), max_size=2)),
    "sequence": st.one_of(TEXT, st.none(), st.integers()),
    "layer": st.one_of(
        TEXT.map(lambda s: "zz" + s), st.builds(nn.Linear, st.integers(1, 3), st.integers(1, 3))
    ),
    "seed": st.one_of(st.integers(max_value=-1), TEXT, FRACTIONAL),
    "pair": st.one_of(
        st.tuples(st.integers(max_value=0), st.integers(1, 8)),
        st.tuples(st.integers(1, 8)),
        TEXT.filter(lambda s: len(s) != 2),
        st.integers(max_value=0),
        NAN_OR_INF,
    ),
    "name": st.one_of(
        TEXT.filter(lambda s: not s or not all(c.islower() or c.isdigit() or c == "_" for c in s)),
        st.integers(),
    ),
    "dict": st.one_of(TEXT, st.lists(st.integers(), max_size=2), st.none()),
}
assert set(NUMBER_STRATEGIES) == set(NUMBER_KINDS)


def bad_strategy(kind, value) -> st.SearchStrategy:
    """A strategy of bad values of ``kind`` for an argument whose valid value is ``value``."""
    if isinstance(kind, tuple):  # an explicit (label, value) of the case
        return st.just(kind[1])
    if kind in NUMBER_STRATEGIES:
        return NUMBER_STRATEGIES[kind]
    assert kind in TENSOR_KINDS, kind
    if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):  # spoil the first
        return _tensor_strategy(kind, value[0]).map(lambda bad: [bad, *value[1:]])
    return _tensor_strategy(kind, torch.as_tensor(value))


# ---------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_valid_call_of_each_case_works(name):
    """Each case's valid arguments are accepted, so the bad-input test below tests the bad value."""
    case = CASES[name]
    case.call(**case.valid())


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=6, deadline=None, database=None, derandomize=True)
@given(data=st.data())
def test_bad_input_is_rejected_naming_the_argument(name, data):
    case = CASES[name]
    argument = data.draw(st.sampled_from(sorted(case.bad)), label="argument")
    kind = data.draw(st.sampled_from(case.bad[argument]), label="kind")
    kwargs = case.valid()
    kwargs[argument] = data.draw(bad_strategy(kind, kwargs.get(argument)), label="bad value")
    with pytest.raises((TypeError, ValueError)) as error:
        case.call(**kwargs)
    assert clear(error.value, case.named(argument)), (
        f"the error does not name {case.named(argument)!r}: {error.value}"
    )


def test_every_public_callable_has_a_case():
    public = public_callables()
    missing = [name for name in public if not covered(name) and name not in EXEMPT]
    assert not missing, f"public functions without a bad-input case in tests/bad_input_cases.py: {missing}"
    stale = [name for name in EXEMPT if name not in public or covered(name)]
    assert not stale, f"EXEMPT names that are no longer public: {stale}"


def _issue_23_examples():
    """The examples of issue 23, each with the argument its error must name."""
    from cvlib import explain, metrics
    from cvlib.data import ShapesDataset
    from cvlib.models.blocks import SmallCNN
    from cvlib.ops import upsample

    model = SmallCNN(3, width=2)
    images = torch.rand(2, 3, 16, 16)
    pr = metrics.precision_recall
    return [
        (lambda: metrics.accuracy(torch.full((4, 3), math.nan), torch.tensor([0, 0, 0, 0])), "logits"),
        (lambda: pr(torch.tensor([0.9, 0.8, 0.7]), torch.ones(3, dtype=torch.bool), num_gt=1), "matched"),
        (lambda: upsample.bilinear(torch.randint(0, 255, (1, 3, 4, 4), dtype=torch.uint8), scale=2.0), "x"),
        (lambda: model(images.mul(255).byte()), "images"),
        (lambda: model(images.double()), "images"),
        (lambda: metrics.confusion_matrix([[0, 1]], [[0, 1]], 2), "pred"),
        (lambda: ShapesDataset(8, seed=-1), "seed"),
        (lambda: ShapesDataset(8, seed="0"), "seed"),
        (lambda: ShapesDataset(8, image_size=8192), "image_size"),
        (lambda: explain.fgsm(model, images, [0, 1], eps=math.nan), "eps"),
        (lambda: explain.fgsm(model, images, torch.tensor([1.7, 0.0])), "labels"),
    ]


@pytest.mark.parametrize("index", range(11))
def test_the_examples_of_issue_23(index):
    call, argument = _issue_23_examples()[index]
    with pytest.raises((TypeError, ValueError)) as error:
        call()
    assert clear(error.value, argument), str(error.value)
