"""nbval settings, and one extra check per notebook.

No progress bars in the kernels nbval starts (they inherit this process's environment with
--nbval-current-env), so stderr noise never reaches a compared output.

After the last cell of each notebook, nbval runs one more cell in the same kernel: it moves
every control of every explorer (``cvlib.widgets.explore``) and checks that each step changes
the explorer's own figure and no other figure of the notebook. An ``update`` that draws with a
global name (``ax``) that a later cell reassigned fails here; nbval and the browser test only
see that the cells run.
"""

import os
from collections import defaultdict

import nbformat

os.environ["TQDM_DISABLE"] = "1"

STEPS_PER_CONTROL = 2
CHECK_EXPLORERS = f"""
def _check_explorers():  # a function, so that no name of the notebook is overwritten
    import gc, hashlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from cvlib.widgets import Explorer

    def pictures():  # every live figure of the kernel, rendered: {{id: digest of its pixels}}
        gc.collect()
        rendered = {{}}
        for fig in (o for o in gc.get_objects() if isinstance(o, Figure)):
            canvas = fig.canvas  # a closed figure keeps a plain canvas that cannot render
            agg = FigureCanvasAgg(fig)
            agg.draw()
            rendered[id(fig)] = hashlib.sha1(bytes(agg.buffer_rgba())).hexdigest()
            fig.set_canvas(canvas)
        return rendered

    problems, before = [], pictures()
    for k, explorer in enumerate(Explorer.alive()):
        opening = explorer.values
        for name, control in explorer.controls.items():
            if len(getattr(control, "options", (0, 1))) < 2 or getattr(control, "min", 0) == getattr(control, "max", 1):
                continue  # a dropdown with one choice (e.g. no photo downloaded) cannot be moved
            for _ in range({STEPS_PER_CONTROL}):
                explorer.step(name)
                after = pictures()
                where = f"explorer {{k}} ({{explorer.fig.axes[0].get_title()!r}}), control {{name!r}} -> {{explorer.controls[name].value!r}}"
                if after.get(id(explorer.fig)) == before.get(id(explorer.fig)):
                    problems.append(where + ": its figure did not change")
                others = [f for f in after if f != id(explorer.fig) and f in before and after[f] != before[f]]
                if others:
                    problems.append(where + f": changed {{len(others)}} other figure(s)")
                before = after
        for name, value in opening.items():  # back to the opening view (the displayed figure follows)
            explorer.controls[name].value = value
        before = pictures()
    assert not problems, "\\n".join(problems)
    print(f"{{len(Explorer.alive())}} explorers: every step changed its own figure only")
_check_explorers()
"""


def pytest_collection_modifyitems(session, config, items):
    """Insert the explorer check after the last cell of every notebook that nbval collected."""
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval not installed: nothing to add
        return
    last = {}
    for index, item in enumerate(items):
        if isinstance(item, IPyNbCell):
            last[item.parent] = index
    for notebook, index in sorted(last.items(), key=lambda pair: -pair[1]):
        cell = nbformat.v4.new_code_cell(CHECK_EXPLORERS)  # no execution count: outputs not compared
        check = IPyNbCell.from_parent(notebook, name="explorers change only their own figure",
                                      cell_num=items[index].cell_num + 1, cell=cell,
                                      options=defaultdict(bool, check=False))
        items.insert(index + 1, check)
