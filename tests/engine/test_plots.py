"""Training curves (``vqvdm_core/reporting/plots.py``): a panel per quantity, each on a scale that shows it."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from vqvdm_core.reporting.plots import curves_figure, is_current, plot_loss_curves


def tokenizer_history() -> list[dict]:
    """Records shaped like the quickstart tokenizer's: terms from ~1e-3 to ~150, one validation."""
    records = []
    for i, step in enumerate(range(100, 1400, 100)):
        l2 = 0.08 * math.exp(-0.25 * i)
        records.append({"tag": "train", "step": step, "time": 1.0 * i, "epoch": i // 3, "it_per_s": 9.0,
                        "lr/generator": 2e-3 * (1 - i / 20), "lr/discriminator": 2e-3 * (1 - i / 20),
                        "loss/generator": l2 + 1e-4,
                        "loss/discriminator": 0.0, "generator": l2 + 1e-4, "l2": l2, "codebook": 0.0,
                        "perplexity": 20.0 + 10 * i, "psnr": 19.0 + i, "grad_norm/generator": 0.5 / (i + 1)})
    records.append({"tag": "val", "step": 1300, "time": 20.0, "val/psnr": 31.18, "val/ssim": 0.9725})
    return records


def panels(fig) -> dict[str, object]:
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


def test_every_quantity_gets_its_own_panel_and_scale():
    fig = curves_figure(tokenizer_history(), title="tokenizer")
    axes = panels(fig)
    assert list(axes) == ["loss/generator (= generator)", "l2", "perplexity", "psnr", "grad_norm/generator",
                          "val/ssim", "lr/generator (= lr/discriminator)"]
    for title, ax in axes.items():  # each panel spans its own values: no curve is flat on its axis
        low, high = ax.get_ylim()
        for line in ax.get_lines():
            ys = [float(y) for y in line.get_ydata()]
            if len(ys) > 1 and min(ys) < max(ys):
                span = (math.log(max(ys) / min(ys)) / math.log(high / low) if ax.get_yscale() == "log"
                        else (max(ys) - min(ys)) / (high - low))
                assert span > 0.6, title
    # Decades apart: log; within a few percent to a few times: linear.
    assert {t for t, ax in axes.items() if ax.get_yscale() == "log"} == {
        "loss/generator (= generator)", "l2", "grad_norm/generator"}
    # Terms that never moved are named under the panels, not drawn.
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "constant over the run: loss/discriminator = codebook = 0" in notes


def test_a_validation_result_is_marked_on_its_training_curve_with_its_value():
    axes = panels(curves_figure(tokenizer_history()))
    psnr = axes["psnr"]
    train, val = psnr.get_lines()
    assert len(train.get_xdata()) == 13 and train.get_linestyle() == "-"
    assert list(val.get_xdata()) == [1300] and list(val.get_ydata()) == [31.18]
    assert val.get_linestyle() == "None" and val.get_marker() == "D"  # a point, not a line
    assert "31.18" in [t.get_text() for t in psnr.texts]
    assert [t.get_text() for t in psnr.get_legend().get_texts()] == ["train", "val/psnr"]
    # A result without a training term: its own panel, on the same steps as every other panel.
    ssim = axes["val/ssim"]
    assert "0.9725" in [t.get_text() for t in ssim.texts]
    assert ssim.get_xlim() == axes["l2"].get_xlim() and ssim.get_xlim()[0] < 100 < 1300 < ssim.get_xlim()[1]


def test_the_png_says_which_layout_drew_it(tmp_path):
    path = plot_loss_curves(tokenizer_history(), tmp_path / "curves.png", title="tokenizer")
    assert path == tmp_path / "curves.png" and is_current(path)
    with Image.open(path) as image:
        assert image.size[0] == 1150 and image.size[1] > 500
    Image.new("RGB", (10, 10)).save(tmp_path / "old.png")  # an older layout, no text chunk
    assert not is_current(tmp_path / "old.png") and not is_current(tmp_path / "missing.png")


@pytest.mark.parametrize("history", [[], [{"tag": "val", "step": 5, "val/x": 1.0}]])
def test_no_training_record_writes_nothing(tmp_path, history):
    assert plot_loss_curves(history, tmp_path / "c.png") is None and not (tmp_path / "c.png").exists()


def test_a_single_training_record_is_drawn_as_a_labelled_point():
    fig = curves_figure([{"tag": "train", "step": 1, "loss/denoiser": 0.5, "lr/denoiser": 1e-4}])
    axes = panels(fig)
    assert set(axes) == {"loss/denoiser", "lr/denoiser"}
    assert "0.5" in [t.get_text() for t in axes["loss/denoiser"].texts]
