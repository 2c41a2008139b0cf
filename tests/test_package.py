"""`import cvlib` is fast and lazy, and touches no network."""

import subprocess
import sys


def test_import_is_fast_and_lazy():
    code = (
        "import time, sys; t = time.perf_counter(); import cvlib; "
        "print(time.perf_counter() - t, 'torch' in sys.modules)"
    )
    seconds, torch_loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert torch_loaded == "False"
    assert float(seconds) < 1.0


def test_submodules_load_on_first_use():
    import cvlib

    assert cvlib.data.ShapesDataset is not None
    assert "weights" in dir(cvlib)


def test_import_opens_no_socket():
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise RuntimeError('network used')\n"
        "socket.socket.connect = refuse\n"
        "import cvlib, cvlib.data, cvlib.train, cvlib.weights, cvlib.viz, cvlib.recipes\n"
        "cvlib.weights.load_model('shapes_cnn')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
