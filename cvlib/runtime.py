"""Where a notebook runs: the device, the number of CPU threads, the seeds, set in one call.

Every notebook starts with ``device = runtime.start()``:

1. **device**: ``cuda`` when a GPU is there, else ``cpu``; the notebooks move models and tensors
   to it, so they run unchanged on Colab's GPU;
2. **one CPU thread** unless the reader asks for more (``CVLIB_THREADS=4 jupyter lab`` or
   ``start(threads=4)``). The course's models are small: a step is many small tensor
   operations, and each multi-threaded one waits for *every* thread. On a laptop that is doing
   something else one busy core stalls them all; measured on a 2-core machine with both cores
   busy, notebook 09 took 148 s with torch's default two threads against 33 s with one (as
   reported in the project's issue 24, load about 3; ``bench/notebooks.py`` measures every
   notebook idle and busy, and has not yet been run on an idle machine);
3. **seeds** for Python, NumPy and torch, so the figures and numbers are the ones committed.
"""

from __future__ import annotations

import os

import torch

from cvlib.train import default_device, seed_everything

__all__ = ["start", "THREADS_VARIABLE"]

THREADS_VARIABLE = "CVLIB_THREADS"


def start(seed: int = 0, threads: int | None = None) -> torch.device:
    """Seed everything, set torch's CPU threads and return the device to compute on.

    ``threads`` defaults to the environment variable ``CVLIB_THREADS``, else 1. Prints one line
    saying what was chosen.
    """
    if threads is None:
        value = os.environ.get(THREADS_VARIABLE, "1")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {value!r}")
        threads = int(value)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    torch.set_num_threads(threads)
    seed_everything(seed)
    device = default_device()
    print(f"device: {device}; {threads} CPU thread{'s' if threads > 1 else ''} "
          f"(set {THREADS_VARIABLE} for more); seed {seed}")
    return device
