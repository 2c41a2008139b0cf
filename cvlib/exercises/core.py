"""The mechanism every exercise shares: run a student's function and cvlib's on the same cases,
find the smallest input where they disagree, and name the classic mistake when one fits.

An :class:`Exercise` is data: the reference function, hand-picked edge cases, a generator of
random cases (a seeded ``torch.Generator``, so a verdict is the same on every run), how to
compare two outputs, which inputs get gradients, and ``mistakes``: wrong versions of the
function, one per classic mistake, keyed by what a student should read ("IoU uses +1 pixel
widths"). When the student's output equals a mistake's output on every failing case, the
message names that mistake.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

MAX_SHOWN = 64  # a tensor with more elements is summarised in messages
SHRINK_TRIES = 60  # smaller inputs tried at most (a count, not a time: the same message everywhere)
DIAGNOSED_CASES = 40  # failing cases a mistake must reproduce to be named (the smallest, then a spread)


class NotImplementedYet(Exception):
    """The student's function raised ``NotImplementedError``."""


@dataclass
class Case:
    """One input: positional ``args``, keyword ``kwargs``, and a ``note`` saying what it tests.

    ``rows`` lists groups of argument positions whose tensors share their first dimension
    (``((0, 1),)`` for boxes and scores): the shrinker drops one row of a group at a time.
    ``grad`` lists the positions of the tensor arguments whose gradients are compared.
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    note: str = "random"
    rows: tuple = ()
    grad: tuple = ()

    def fresh(self, requires_grad: bool = False) -> tuple[list, dict]:
        """Copies of the inputs (a function may write into its inputs), non-contiguous ones kept
        non-contiguous; the ``grad`` positions as leaves that require gradients."""
        args = [_copy(a) for a in self.args]
        if requires_grad:
            for i in self.grad:
                args[i] = args[i].detach().requires_grad_(True)
        return args, {k: _copy(v) for k, v in self.kwargs.items()}

    def size(self) -> int:
        """Number of elements of all tensor inputs: what "smallest failing input" minimises."""
        return sum(_numel(a) for a in (*self.args, *self.kwargs.values()))

    def without_row(self, group: tuple, row: int) -> Case:
        args = list(self.args)
        for i in group:
            args[i] = torch.cat([args[i][:row], args[i][row + 1:]])
        return Case(tuple(args), self.kwargs, self.note + ", shrunk", self.rows, self.grad)

    def smaller(self) -> Iterable[Case]:
        """Cases with one row fewer in one group (the shrinker's candidates)."""
        for group in self.rows:
            for row in range(len(self.args[group[0]])):
                yield self.without_row(group, row)


def _copy(value):
    if isinstance(value, torch.Tensor):
        out = value.detach().clone()
        if not value.is_contiguous() and value.ndim >= 1 and value.numel() > 1:
            return noncontiguous(out)
        return out
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, torch.nn.Module):  # a function may change its mode or its statistics
        return copy.deepcopy(value)
    return value


def _numel(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (list, tuple)):
        return sum(_numel(v) for v in value)
    return getattr(value, "size_for_shrinking", 1)


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values as ``t`` in a non-contiguous tensor (every other element of a wider one)."""
    return torch.stack([t, torch.zeros_like(t)], dim=-1)[..., 0]


# ---------------------------------------------------------------------------------------------
# Comparing outputs


def compare(expected, actual, rtol: float = 1e-5, atol: float = 1e-6) -> str | None:
    """None when ``actual`` matches ``expected`` (tensors: shape, integer-or-float kind and
    values up to ``rtol``/``atol``, NaN equal to NaN), else what differs, in words."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            return f"expected a tuple of {len(expected)} results, got {_kind(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            reason = compare(e, a, rtol, atol)
            if reason:
                return f"result {i}: {reason}"
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) != set(expected):
            return f"expected a dict with keys {sorted(expected)}, got {_kind(actual)}"
        for key in expected:
            reason = compare(expected[key], actual[key], rtol, atol)
            if reason:
                return f"[{key!r}]: {reason}"
        return None
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            return f"expected a tensor, got {_kind(actual)}"
        if actual.shape != expected.shape:
            return f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)}"
        if expected.dtype == torch.bool or not expected.is_floating_point():
            if actual.is_floating_point() and not expected.is_floating_point():
                return f"dtype {actual.dtype} instead of an integer dtype ({expected.dtype})"
            if not torch.equal(actual.to(expected.dtype), expected):
                wrong = (actual.to(expected.dtype) != expected).nonzero()[0].tolist()
                return f"values differ, first at index {tuple(wrong)}"
            return None
        return _close(expected.detach().double(), actual.detach().double(), rtol, atol)
    if isinstance(expected, (float, int)):
        if isinstance(actual, torch.Tensor) and actual.numel() == 1:
            actual = actual.item()
        if not isinstance(actual, (float, int)):
            return f"expected a number, got {_kind(actual)}"
        if not (math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol)
                or (math.isnan(actual) and math.isnan(expected))):
            return f"{actual!r} instead of {expected!r}"
        return None
    return None if actual == expected else f"{actual!r} instead of {expected!r}"


def _close(expected: torch.Tensor, actual: torch.Tensor, rtol: float, atol: float) -> str | None:
    both_nan = expected.isnan() & actual.isnan()
    close = torch.isclose(actual, expected, rtol=rtol, atol=atol) | both_nan
    if close.all():
        return None
    index = (~close).nonzero()[0].tolist()
    diff = (actual - expected).abs().nan_to_num(float("inf"))
    return (f"values differ by up to {diff.max().item():.3g}, first at index {tuple(index)}: "
            f"{actual[tuple(index)].item():.6g} instead of {expected[tuple(index)].item():.6g}")


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def show(value) -> str:
    """A short, exact-enough text of an input or output for messages."""
    if isinstance(value, torch.Tensor):
        text = _show_tensor(value)
        return text + ("  (non-contiguous)" if not value.is_contiguous() else "")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(show(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, float):
        return repr(float(f"{value:.6g}"))
    return repr(value)


def _show_tensor(t: torch.Tensor) -> str:
    t = t.detach()
    dtype = str(t.dtype).replace("torch.", "")
    if t.numel() > MAX_SHOWN:
        return f"tensor of shape {tuple(t.shape)}, {dtype}"
    values = t.tolist()
    if t.is_floating_point():
        values = _rounded(values)
    return f"tensor({values}, {dtype})"


def _rounded(values):
    if isinstance(values, list):
        return [_rounded(v) for v in values]
    return float(f"{values:.5g}")


# ---------------------------------------------------------------------------------------------
# Exercises


@dataclass
class Exercise:
    """Everything :func:`run` needs to check one function (see the module docstring)."""

    name: str
    reference: Callable
    edge_cases: Callable[[], list[Case]]
    random_case: Callable[[torch.Generator, int], Case]
    random_count: int = 100
    mistakes: dict[str, Callable] = field(default_factory=dict)
    compare: Callable | None = None  # (expected, actual, case) -> reason or None; default compare()
    seed: int = 0

    def differs(self, expected, actual, case: Case) -> str | None:
        """Why ``actual`` is not ``expected`` on ``case`` (None when they agree)."""
        return self.compare(expected, actual, case) if self.compare else compare(expected, actual)

    def cases(self) -> list[Case]:
        generator = torch.Generator().manual_seed(self.seed)
        return self.edge_cases() + [self.random_case(generator, i) for i in range(self.random_count)]


def call(fn: Callable, case: Case, requires_grad: bool = False):
    """``fn`` on fresh copies of the case's inputs (the ``case.grad`` ones requiring gradients
    when ``requires_grad``); returns the output and those inputs. A ``NotImplementedError``
    becomes :class:`NotImplementedYet`."""
    args, kwargs = case.fresh(requires_grad)
    try:
        return fn(*args, **kwargs), [args[i] for i in case.grad]
    except NotImplementedError as error:
        raise NotImplementedYet() from error


def output(fn: Callable, case: Case):
    """What ``fn`` returns on ``case``."""
    return call(fn, case)[0]


def gradients(outputs, inputs: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """Gradients with respect to ``inputs`` of a fixed random weighting of the tensors in
    ``outputs`` (None when every output is empty); zeros when the output does not depend on
    the inputs through autograd."""
    tensors = [t for t in _tensors(outputs) if t.is_floating_point() and t.numel()]
    if not tensors:
        return None
    generator = torch.Generator().manual_seed(1)
    total = sum((t * torch.rand(t.shape, generator=generator, dtype=torch.float64).to(t)).nan_to_num().sum()
                for t in tensors)
    if not total.requires_grad:
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad(total, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def failure(exercise: Exercise, fn: Callable, case: Case) -> str | None:
    """Why ``fn`` is wrong on ``case`` (None when it is right): its output, or the gradients
    of its output with respect to the ``case.grad`` inputs, differ from the reference's, or it
    raised."""
    differentiate = bool(case.grad)
    expected, expected_inputs = call(exercise.reference, case, differentiate)
    try:
        actual, actual_inputs = call(fn, case, differentiate)
    except NotImplementedYet:
        raise
    except Exception as error:  # noqa: BLE001 - a student's crash is a verdict, not a bug
        return f"raised {type(error).__name__}: {error}"
    reason = exercise.differs(expected, actual, case)
    if reason or not differentiate:
        return reason
    expected_grads = gradients(expected, expected_inputs)
    if expected_grads is None:  # nothing to differentiate (an empty output)
        return None
    try:
        actual_grads = gradients(actual, actual_inputs)
    except Exception as error:  # noqa: BLE001
        return f"backward raised {type(error).__name__}: {error}"
    for i, expected_grad, actual_grad in zip(case.grad, expected_grads, actual_grads):
        reason = compare(expected_grad, actual_grad, rtol=1e-4, atol=1e-6)
        if reason and not any(t.requires_grad for t in _tensors(actual)):
            return ("the output is right but not differentiable: compute it with torch operations "
                    "from the inputs (no .item(), numpy or torch.no_grad())")
        if reason:
            return f"the output is right but the gradient with respect to argument {i} is wrong: {reason}"
    return None


def shrink(exercise: Exercise, fn: Callable, case: Case) -> Case:
    """A smaller input on which ``fn`` is still wrong: drop rows while it keeps failing."""
    tries = 0
    progress = True
    while progress and tries < SHRINK_TRIES:
        progress = False
        for smaller in case.smaller():
            tries += 1
            if failure(exercise, fn, smaller):
                case, progress = smaller, True
                break
            if tries >= SHRINK_TRIES:
                break
    return case


def diagnose(exercise: Exercise, fn: Callable, failing: list[Case]) -> str | None:
    """The classic mistake whose output equals ``fn``'s on every failing case examined (the
    smallest ones and a spread of the others), if one does."""
    step = max(1, len(failing) // DIAGNOSED_CASES)
    examined = failing[:DIAGNOSED_CASES // 2] + failing[DIAGNOSED_CASES // 2::step][:DIAGNOSED_CASES]
    for mistake, wrong in exercise.mistakes.items():
        if all(_same(wrong, fn, case) and _fails(exercise, wrong, case) for case in examined):
            return mistake
    return None


def _fails(exercise: Exercise, wrong: Callable, case: Case) -> bool:
    try:
        return failure(exercise, wrong, case) is not None
    except NotImplementedYet:
        return False


def _same(wrong: Callable, fn: Callable, case: Case) -> bool:
    """Whether ``fn`` does what the mistake ``wrong`` does on ``case``: the same output (up to
    rounding), or both raise the same exception."""
    outcomes = []
    for function in (wrong, fn):
        try:
            outcomes.append(("ok", output(function, case)))
        except Exception as error:  # noqa: BLE001 - a crash is an outcome too
            outcomes.append(("raised", type(error)))
    (kind_a, a), (kind_b, b) = outcomes
    if kind_a != kind_b:
        return False
    return a == b if kind_a == "raised" else compare(a, b) is None


def message(exercise: Exercise, fn: Callable, case: Case, reason: str, mistake: str | None,
            failed: int, total: int) -> str:
    """What a student reads: the smallest failing input, expected vs actual, the mistake."""
    lines = [f"{exercise.name}: wrong on {failed} of {total} cases. Smallest failing input ({case.note}):"]
    names = _parameter_names(exercise.reference)
    for i, value in enumerate(case.args):
        lines.append(f"    {names[i] if i < len(names) else f'arg{i}'} = {show(value)}")
    lines += [f"    {key} = {show(value)}" for key, value in case.kwargs.items()]
    lines.append(f"  expected: {show(output(exercise.reference, case))}")
    try:
        lines.append(f"  got:      {show(output(fn, case))}")
    except Exception as error:  # noqa: BLE001
        lines.append(f"  got:      {type(error).__name__}: {error}")
    lines.append(f"  ({reason})")
    if mistake:
        lines.append(f"  Likely mistake: {mistake}.")
    return "\n".join(lines)


def _parameter_names(fn: Callable) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()]


def run(exercise: Exercise, fn: Callable) -> bool:
    """Check ``fn`` against the exercise: print one line and return True when every case
    passes; print "not implemented yet" and return False for a ``NotImplementedError``; raise
    ``AssertionError`` with the smallest failing input otherwise."""
    cases = exercise.cases()
    try:
        failing = [(case, reason) for case in cases if (reason := failure(exercise, fn, case))]
    except NotImplementedYet:
        print(f"{exercise.name}: not implemented yet")
        return False
    if not failing:
        print(f"{exercise.name}: {len(cases)} cases passed")
        return True
    failing.sort(key=lambda pair: pair[0].size())
    case = shrink(exercise, fn, failing[0][0])
    reason = failure(exercise, fn, case)
    mistake = diagnose(exercise, fn, [case] + [c for c, _ in failing])
    raise AssertionError(message(exercise, fn, case, reason, mistake, len(failing), len(cases)))
