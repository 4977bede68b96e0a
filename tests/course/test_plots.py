"""The course's figures read at a glance (#26): legends that match their lines and sit off the data,
readable sizes, colours that show on white, a slider figure of a fixed size, gains against d
drawn as points and a smoothed curve rather than a line through the iterations."""
import io
import re

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from rlhf_lab.core.paths import PACKAGE  # noqa: E402
from rlhf_lab.course.plots import beyond as beyond_plots  # noqa: E402
from rlhf_lab.course.plots import closed_form as closed_form_plots  # noqa: E402
from rlhf_lab.course.plots import common  # noqa: E402
from rlhf_lab.course.plots import ppo as ppo_plots  # noqa: E402
from rlhf_lab.equations import closed_form  # noqa: E402
from rlhf_lab.equations.enumerable_space import enumerable_space  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def contrast_with_white(color) -> float:
    """The WCAG contrast ratio of ``color`` against white (1 to 21)."""
    rgb = np.asarray(matplotlib.colors.to_rgb(color))
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return 1.05 / (float(linear @ [0.2126, 0.7152, 0.0722]) + 0.05)


def png_size(fig) -> tuple[int, int]:
    """The size of the picture a notebook shows (the inline backend crops it 'tight')."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return Image.open(buffer).size


def test_sequence_colours_show_on_white_and_every_figure_takes_them_from_ramp():
    """Viridis' last tenth (lime) drew β = 0.01 at a contrast of 1.5:1; ramp stops before it."""
    for cmap in ("viridis", "plasma"):
        assert min(contrast_with_white(c) for c in common.ramp(6, cmap)) >= 2.5
    direct = [f.name for f in (PACKAGE / "course" / "plots").glob("*.py")
              if re.search(r"plt\.cm\.(viridis|plasma)", f.read_text())]
    assert direct == []


def test_the_slider_figure_keeps_its_size_and_its_label_inside_the_axes():
    space = enumerable_space(vocab_size=3, max_len=4, seed=0)
    betas = torch.logspace(-2, 1.5, 30, dtype=torch.float64).tolist()
    kl = torch.stack([closed_form.kl_optimal(space.logp_ref, space.rewards, b) for b in betas])
    value = torch.stack([closed_form.optimal_objective(space.logp_ref, space.rewards, b) for b in betas])
    front = {"kl": kl, "expected_reward": value + torch.tensor(betas) * kl}
    sizes = set()
    for beta in (0.0316, 1.0, 31.6):        # the slider's ends: the point at the top right, at 0
        p_star = closed_form.boltzmann_policy(space.logp_ref, space.rewards, beta).exp()
        fig = closed_form_plots.boltzmann_panel(space.rewards, space.logp_ref.exp(), p_star, beta,
                                                front)
        sizes.add(png_size(fig))
        right = fig.axes[1]
        renderer = fig.canvas.get_renderer()
        (label,) = right.texts
        inside, box = right.get_window_extent(renderer), label.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0, (beta, box)
        assert label.get_fontsize() >= common.LEGEND_FONTSIZE
    assert len(sizes) == 1, sizes


def _rounds(shift: float) -> dict:
    rows = [{"iterations": 10 * k, "gold": shift + 0.1 * k, "kl": 0.3 * k, "labels": 100 * k,
             "rm_sft": {"gold_order_accuracy": 0.7}, "rm_policy": {"gold_order_accuracy": 0.6 + shift}}
            for k in (1, 2, 3)]
    history = [{"iteration": i, "gold": shift + 0.01 * i} for i in range(30)]
    return {"rounds": rows, "history": history}


def test_iterative_rounds_legends_match_their_lines_and_sit_below_the_panels():
    """The legend covered a line, and its dashed entries looked solid (markers on short handles)."""
    result = {"sft": {"gold": 0.0}, "arms": {"iterative": _rounds(0.0), "one_round": _rounds(0.05)}}
    fig = beyond_plots.iterative_rounds(result)
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        lines = {line.get_label(): line for line in ax.get_lines()}
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            assert handle.get_linestyle() == lines[text.get_text()].get_linestyle(), text
            assert text.get_fontsize() >= common.LEGEND_FONTSIZE
        assert legend.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0
    assert {"-", "--"} <= {h.get_linestyle() for h in fig.axes[1].get_legend().legend_handles}
    assert fig.axes[1].get_legend().handlelength >= 3


def test_gain_against_d_is_points_and_a_curve_that_moves_forward_in_d():
    """KL goes back and forth along training; a line in iteration order scribbled."""
    rng = np.random.default_rng(0)
    kl = np.abs(np.linspace(0, 4, 60) + rng.normal(0, 0.6, 60))
    history = [{"kl": k, "proxy": 0.5 * k, "gold": 0.2 * k} for k in kl]
    fig = ppo_plots.gold_vs_proxy_over_training(history)
    joined = [line for line in fig.axes[0].get_lines()
              if line.get_linestyle() not in ("None", "") and len(line.get_xdata()) > 2]
    assert len(joined) == 2                                       # the proxy's and the gold's
    for line in joined:
        assert np.all(np.diff(line.get_xdata()) > 0)
    points = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "None"]
    assert sorted(len(p.get_xdata()) for p in points) == [60, 60]


def test_binned_means_are_the_means_of_groups_in_order_of_x():
    x, y = ppo_plots.binned_means([3, 1, 2, 4, 5], [30, 10, 20, 40, 50], bins=2)
    assert x.tolist() == [2.0, 4.5] and y.tolist() == [20.0, 45.0]
