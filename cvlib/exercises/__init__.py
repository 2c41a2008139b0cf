"""Checks for students: ``check(name, fn)`` compares your version of a cvlib function with
cvlib's own.

    from cvlib.exercises import check

    def box_iou(boxes1, boxes2):
        ...

    check("box_iou", box_iou)   # prints "box_iou: 149 cases passed", or raises AssertionError

Every check runs hand-picked edge cases (empty inputs, ties, touching boxes, thresholds at the
boundary, non-contiguous tensors) and random cases from a seeded generator (the same verdict on
every run), and compares gradients where the function is used in training. On a failure the
``AssertionError`` shows the smallest failing input found, the expected and the actual output,
and the classic mistake when the output matches one ("IoU uses +1 pixel widths"). A function
that still raises ``NotImplementedError`` gets one line, "NAME: not implemented yet", and
``False``, so a notebook keeps running. ``NAMES`` lists what can be checked.
"""

from __future__ import annotations

from collections.abc import Callable

from cvlib._checks import choice
from cvlib.exercises import boxes, dense, explain, losses, roi
from cvlib.exercises.core import Exercise, run

__all__ = ["check", "exercise", "NAMES"]

# Each file lists its exercises' factories; ``box_iou_exercise`` builds the check of ``box_iou``.
_FACTORIES: dict[str, Callable[[], Exercise]] = {
    factory.__name__.removesuffix("_exercise"): factory
    for module in (boxes, roi, dense, losses, explain)
    for factory in module.EXERCISES
}
NAMES = tuple(_FACTORIES)


def exercise(name: str) -> Exercise:
    """The :class:`~cvlib.exercises.core.Exercise` behind ``check(name, ...)``."""
    return _FACTORIES[choice(name, "name", NAMES)]()


def check(name: str, fn: Callable) -> bool:
    """Check ``fn``, a student's version of cvlib's function ``name`` (same signature).

    Prints ``"NAME: N cases passed"`` and returns True when ``fn`` agrees with cvlib on every
    case (outputs, and gradients where the function is trained through); prints
    ``"NAME: not implemented yet"`` and returns False when ``fn`` raises
    ``NotImplementedError``; raises ``AssertionError`` with the smallest failing input, the
    expected and actual outputs and, when recognised, the name of the mistake, otherwise.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__}")
    return run(exercise(name), fn)
