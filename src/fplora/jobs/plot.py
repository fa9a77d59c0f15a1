"""`fplora plot`: training and evaluation loss against global step, one colour per run, one PNG.

Two panels share the step axis: above, the training loss (faint: as logged; solid: smoothed);
below, the evaluation loss of each scored checkpoint, from the untrained network's at step 0 (also
a dashed line in the run's colour, the level to beat), the best checkpoint starred. Several specs
(`fplora plot v7.yaml v8.yaml`) draw into the same panels, so two versions compare in one picture.

Why matplotlib, as an optional extra (`fplora[plot]`) imported only here: a readable line chart
with two y-axes' worth of scales, legends and anti-aliased lines is its everyday job, and it is the
one library a reader of the PNG expects; drawing the same with Pillow (already a dependency, used
for contact sheets) would be hundreds of lines of axis and tick code to maintain. It is imported
inside `draw`, so `fplora --help` and every other command stay as fast as before, and a GPU box
without it still trains; the plot command says how to install it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fplora.curves.loss import Curves, curves_of, ema
from fplora.jobs import output
from fplora.problems import Problem, UserError
from fplora.spec.models import Spec
from fplora.writable import write_problem

DEFAULT_SMOOTHING = 0.9
INSTALL = "install the plot extra: uv pip install 'fplora[plot]' (or pip install matplotlib)"


def default_path(specs: list[Path], versions: list[str]) -> Path:
    """`configs/loss-v7-v8.png`, beside the first spec."""
    return specs[0].parent / f"loss-{'-'.join(versions)}.png"


def pyplot(where: str, key: str, message: str) -> Any:
    """matplotlib's pyplot, drawing to files only; without matplotlib, a UserError at `where` and
    `key` saying `message` and how to install the plot extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window (a GPU box has no display)
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(Problem(where, None, key, message, INSTALL)) from None
    return plt


def _top(raw: list[float], smoothed: list[float]) -> float:
    """The training panel's upper limit for one run: the smoothed curve with room above it, or the
    raw values' 98th percentile when higher. A spike of a single step (a hard batch, a high noise
    level) can be many times the typical loss and would otherwise squash everything else."""
    finite = sorted(v for v in raw if math.isfinite(v))
    smooth = [v for v in smoothed if math.isfinite(v)]
    if not finite or not smooth:
        return 1.0
    percentile = finite[min(len(finite) - 1, int(0.98 * len(finite)))]
    return max(max(smooth) * 1.15, percentile)


def draw(runs: list[Curves], path: Path, *, smoothing: float = DEFAULT_SMOOTHING) -> Path:
    """Write the PNG; returns its path."""
    plt = pyplot("fplora plot", "", "needs matplotlib, which is not installed")
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True, constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    tops: list[float] = []
    for index, run in enumerate(runs):
        colour = colours[index % len(colours)]
        train = run.train
        if train.steps:
            top.plot(train.steps, train.values, color=colour, alpha=0.25, linewidth=0.8)
            smoothed = ema(train.values, smoothing)
            tops.append(_top(train.values, smoothed))
            top.plot(
                train.steps,
                smoothed,
                color=colour,
                linewidth=1.8,
                label=f"{run.name}: {run.train_source}, smoothed {smoothing:g}",
            )
        steps, values = list(run.eval.steps), list(run.eval.values)
        if run.untrained is not None and math.isfinite(run.untrained):
            steps, values = [0, *steps], [run.untrained, *values]  # where training starts from
        if steps:
            bottom.plot(steps, values, color=colour, marker="o", markersize=4, label=run.name)
        if run.untrained is not None and math.isfinite(run.untrained):
            bottom.axhline(
                run.untrained, color=colour, linestyle="--", linewidth=1, label=f"{run.name}: untrained"
            )
        if run.best is not None:
            step, loss = run.best
            bottom.plot([step], [loss], color=colour, marker="*", markersize=14, linestyle="none")
            bottom.annotate(
                f"best step{step}\n{loss:.4f}",
                (step, loss),
                textcoords="offset points",
                xytext=(8, 8),
                fontsize=8,
                color=colour,
            )
    if tops:
        top.set_ylim(top=max(tops))  # single-step spikes would flatten the curves that matter
    top.set_title("training loss (faint: each step; solid: smoothed)")
    top.set_ylabel("loss")
    bottom.set_title("evaluation loss (held-out records, fixed noise)")
    bottom.set_ylabel("loss")
    bottom.set_xlabel("global step")
    for axes in (top, bottom):
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
        else:
            axes.text(0.5, 0.5, "no data yet", transform=axes.transAxes, ha="center", color="grey")
    figure.suptitle(" vs ".join(run.name for run in runs))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def run_plot(specs: list[Spec], out: Path | None, *, smoothing: float = DEFAULT_SMOOTHING) -> int:
    """`fplora plot`: the runs' curves into one PNG (default beside the first spec), its path printed."""
    runs = [curves_of(spec) for spec in specs]
    output.problems([problem for run in runs for problem in run.notes])
    path = output_path(out, default_path([s.path for s in specs], [s.version for s in specs]))
    try:
        written = draw(runs, path, smoothing=smoothing)
    except OSError as error:  # an unwritable folder, a file where the folder should be
        raise UserError(write_problem(path, error, "name a --out in a folder you can write")) from None
    output.line(output.shown(written))
    return 0


def output_path(out: Path | None, default: Path) -> Path:
    """Where `--out` puts the PNG: into a folder it names (under the default name), else the file
    it names, with `.png` added when it has no suffix (matplotlib would add it unsaid)."""
    if out is None:
        return default
    if out.is_dir():
        return out / default.name
    return out if out.suffix else out.with_name(f"{out.name}.png")
