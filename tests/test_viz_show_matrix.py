"""cvlib.viz.show_matrix: the lecture's number tables."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cvlib import viz  # noqa: E402


def test_show_matrix_writes_every_value():
    fig, ax = plt.subplots()
    image, texts = viz.show_matrix(ax, torch.tensor([[1.0, 2.0], [3.0, 4.5]]), title="t")
    assert [t.get_text() for t in texts] == ["1", "2", "3", "4.5"]
    assert image.get_array().shape == (2, 2) and ax.get_title() == "t"
    assert texts[3].get_color() == "white" and texts[0].get_color() == "black"
    assert viz.show_matrix(ax, [[0, 1]], numbers=False)[1] == []
    plt.close(fig)


def test_show_matrix_rejects_non_matrices():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="values"):
        viz.show_matrix(ax, torch.zeros(2, 2, 2))
    plt.close(fig)
