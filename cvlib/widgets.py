"""Interactive explorers for the notebooks: a figure that sliders update in place.

``explore(fig, update, **controls)`` is the one pattern every notebook uses:

1. the figure is displayed at once as an ordinary output (a static picture that reads well on
   GitHub and in an executed notebook), then the controls below it;
2. moving a control calls ``update(**values)``, which changes the figure's *existing* artists
   (``AxesImage.set_data``, ``Line2D.set_data``, ``Text.set_text``...), and the displayed
   picture is replaced in place through its display id: no new figure, no ``Output`` flicker.

It uses only APIs that exist in ipywidgets 7.7 (Colab) and 8.x, and no ``ipympl``. The kernel
time of the last step is kept in ``Explorer.last_step_seconds`` (the browser tests and
``bench/`` read it).

The controls are displayed with a plain-text fallback (``RUN_TO_EXPLORE``) instead of the
widget's repr. Committed notebooks carry no widget state (``tools/strip_widget_state.py``
removes it and the widget views: Colab's ipywidgets 7 cannot load the state that 8 saves), so
an unrun notebook shows the static figure and that line, never ``VBox(children=...``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import DisplayHandle, display

from cvlib import _checks

__all__ = ["Explorer", "explore", "slider", "int_slider", "dropdown", "RUN_TO_EXPLORE"]

RUN_TO_EXPLORE = "Run this cell to explore: move {controls} and the figure above redraws."
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # the same in ipywidgets 7.x and 8.x


class Explorer:
    """A displayed figure plus the controls that redraw it; see :func:`explore`."""

    _created: list[weakref.ref] = []  # every explorer, in order, for bench/widgets.py

    def __init__(self, fig: plt.Figure, update: Callable[..., None], controls: dict[str, widgets.Widget]):
        Explorer._created.append(weakref.ref(self))
        self.fig = fig
        self.update = update
        self.controls = controls
        self.last_step_seconds: float | None = None
        self._handle = DisplayHandle()
        for control in controls.values():
            control.observe(self._on_change, names="value")

    @classmethod
    def alive(cls) -> list[Explorer]:
        """The explorers of this kernel that still exist, oldest first."""
        return [e for e in (ref() for ref in cls._created) if e is not None]

    def step(self, name: str) -> float:
        """Move control ``name`` one step (next slider value or dropdown option, wrapping
        around) as a reader would; return the kernel time of the redraw in seconds."""
        control = self.controls[name]
        if isinstance(control, widgets.Dropdown):
            values = [o[1] if isinstance(o, tuple) else o for o in control.options]
            control.value = values[(values.index(control.value) + 1) % len(values)]
        else:
            up = control.value + control.step
            control.value = up if up <= control.max else control.min
        return self.last_step_seconds

    @property
    def values(self) -> dict:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def show(self) -> None:
        """Draw the figure for the current values and display it, then the controls."""
        self.update(**self.values)
        self._handle.display(self.fig)
        plt.close(self.fig)  # the inline backend must not show it a second time
        box = widgets.VBox(list(self.controls.values()))
        names = ", ".join(f"'{control.description}'" for control in self.controls.values())
        view = {"version_major": 2, "version_minor": 0, "model_id": box.model_id}
        display({WIDGET_VIEW: view, "text/plain": RUN_TO_EXPLORE.format(controls=names)}, raw=True)

    def _on_change(self, _change) -> None:
        start = time.perf_counter()
        self.update(**self.values)
        self._handle.update(self.fig)
        self.last_step_seconds = time.perf_counter() - start


def explore(fig: plt.Figure, update: Callable[..., None], **controls: widgets.Widget) -> Explorer:
    """Show ``fig`` and ``controls``; every change calls ``update(**values)`` and redraws.

    ``update`` receives one keyword argument per control (its current value) and must modify
    the artists of ``fig``; it is also called once before the first display. In a notebook
    write ``_ = explore(...)`` so that no repr is printed.
    """
    if not isinstance(fig, plt.Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {_checks.describe(fig)}")
    if not callable(update):
        raise TypeError(f"update must be a function of the controls' values, got {_checks.describe(update)}")
    if not controls:
        raise ValueError("explore needs at least one control, e.g. k=int_slider(1, 5)")
    bad = [name for name, c in controls.items() if not isinstance(c, widgets.ValueWidget)]
    if bad:
        raise TypeError(f"controls {bad} must be ipywidgets value widgets (sliders, dropdowns...)")
    explorer = Explorer(fig, update, controls)
    explorer.show()
    return explorer


def _check_range(low, high, value, check) -> None:
    """``min <= value <= max`` (``value`` may be None), each checked by ``check``."""
    check(low, "min")
    check(high, "max", low=low)
    if value is not None:
        check(value, "value", low=low, high=high)


def _layout() -> dict:
    return {"style": {"description_width": "initial"}, "layout": widgets.Layout(width="420px")}


def slider(
    description: str, min: float, max: float, value: float | None = None, step: float = 0.05
) -> widgets.FloatSlider:
    """A float slider (``continuous_update=False``: one redraw when the handle is released)."""
    return _slider(widgets.FloatSlider, _checks.number, description, min, max, value, step)


def int_slider(
    description: str, min: int, max: int, value: int | None = None, step: int = 1
) -> widgets.IntSlider:
    """An integer slider (``continuous_update=False``)."""
    return _slider(widgets.IntSlider, _checks.integer, description, min, max, value, step)


def _slider(kind, check, description, min, max, value, step):
    _check_range(min, max, value, check)
    value = min if value is None else value
    return kind(value=value, min=min, max=max, step=step, description=description, continuous_update=False,
                **_layout())


def dropdown(description: str, options, value=None) -> widgets.Dropdown:
    """A dropdown over ``options`` (a list of values or of ``(label, value)`` pairs)."""
    options = _checks.sequence(options, "options", nonempty=True)
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    if value is not None and value not in values:
        raise ValueError(f"value must be one of the options {values}, got {value!r}")
    kwargs = {} if value is None else {"value": value}
    return widgets.Dropdown(options=options, description=description, **kwargs, **_layout())
