"""The `fplora` command line: parse, call, print. No logic a test would want to reach past.

Heavy modules (pydantic, the YAML parser, rich) are imported inside commands so that
`fplora --help` stays fast; nothing here imports torch, accelerate, wandb or musubi-tuner.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fplora import __version__
from fplora.cli import common

if TYPE_CHECKING:
    from rich.console import Console

    from fplora.spec.models import Spec

HELP = "FramePack one-frame LoRA training with musubi-tuner, from one validated YAML spec per experiment."
EXAMPLE = """\b
Example:
  fplora init my-project && cd my-project
  fplora check configs/v1.yaml --skip-models    # before renting a GPU
  fplora train --cache                          # on the GPU box
  fplora infer --lora step5000 --multiplier 1.2 # then compare checkpoints
"""

app = typer.Typer(
    name="fplora",
    help=HELP,
    epilog=EXAMPLE,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[
    Path | None,
    typer.Argument(
        help="Spec file (configs/v8.yaml). Default: the spec of this project's last command.",
        show_default=False,
    ),
]
Gpu = Annotated[
    str | None,
    typer.Option(
        "--gpu",
        metavar="<preset>",
        help="GPU preset: auto, h200, h100-80g, a6000-48g, 4090-24g (wins over the spec's gpu:)."
        " Settings the spec writes win over the preset.",
        show_default=False,
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Render files and print the commands, one per line; run nothing.")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fplora {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """FramePack one-frame LoRA training with musubi-tuner, from one validated YAML spec per experiment."""


@app.command(short_help="Start a project: specs per experiment, a dataset folder.")
def init(
    directory: Annotated[Path, typer.Argument(help="Project folder (created if missing).")] = Path("."),
) -> None:
    """Start a project: configs/base.yaml (the house settings, commented), configs/v1.yaml (the first
    experiment, extending base.yaml), a dataset folder with a README, and a .gitignore for what fplora
    writes.

    Example: fplora init my-project
    """
    from fplora.scaffold import scaffold

    ignore = directory / ".gitignore"
    had_ignore = ignore.is_file()
    with common.user_errors():
        for path in scaffold(directory):
            done = "added fplora's entries to" if path == ignore and had_ignore else "created"
            typer.echo(f"{done} {common.shown(path)}")
    go = "" if directory.resolve() == Path.cwd() else f"cd {shlex.quote(common.shown(directory))}, then "
    typer.echo(
        "next:\n"
        "  1. put one JSON record per line in datasets/dataset-v1/metadata-v1.jsonl"
        " (datasets/dataset-v1/README.md says how)\n"
        "  2. in configs/base.yaml set models.dir (or FPLORA_MODELS_DIR) and train.output_dir\n"
        f"  3. {go}fplora check, fplora cache, fplora train"
    )


@app.command(short_help="Validate a spec and all it names, before GPU time.")
def check(
    spec: SpecArg = None,
    skip_models: Annotated[
        bool,
        typer.Option("--skip-models", help="Check everything but the model files (prepare data anywhere)."),
    ] = False,
    gpu: Gpu = None,
) -> None:
    """Validate a spec and everything it points to, before any GPU time is spent.

    Example: fplora check configs/v8.yaml --skip-models
    """
    with common.user_errors(summary=True):
        loaded = common.load(spec, gpu=gpu)
        raise typer.Exit(common.report_check(loaded, skip_models=skip_models))


@app.command(short_help="Write musubi-tuner's config, dataset and prompt files.")
def render(
    spec: SpecArg = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder to render into (default configs/<version>/).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace files rendered from another spec.")] = False,
    gpu: Gpu = None,
) -> None:
    """Write musubi-tuner's config.toml, dataset.toml and both prompt files for a spec.

    Example: fplora render configs/v8.yaml   (writes configs/v8/config.toml, ...)
    """
    with common.user_errors():
        loaded = common.load(spec, gpu=gpu)
        common.echo_learning_rate(loaded)
        for path in common.write_plan(loaded, out=out, force=force).files:
            typer.echo(common.shown(path))


@app.command(short_help="Cache latents and text-encoder outputs.")
def cache(
    spec: SpecArg = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Recompute caches even when complete and up to date.")
    ] = False,
    dry_run: DryRun = False,
    gpu: Gpu = None,
) -> None:
    """Cache latents (one-frame) and text-encoder outputs for every dataset of the spec.

    Example: fplora cache configs/v8.yaml
    """
    from fplora.jobs.cache import run_cache

    with common.user_errors():
        job = common.job(spec, dry_run=dry_run, gpu=gpu)
        raise typer.Exit(run_cache(job, rebuild=rebuild))


@app.command(short_help="Train the LoRA (accelerate launch fpack_train_network).")
def train(
    spec: SpecArg = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            help="Continue from a state: latest, stepN (global step) or a -state folder.",
            show_default=False,
        ),
    ] = None,
    with_cache: Annotated[bool, typer.Option("--cache", help="Run `fplora cache` first.")] = False,
    stop_pod: Annotated[
        str | None,
        typer.Option("--stop-pod", help="Stop this RunPod pod when training ends: success, always or never."),
    ] = None,
    dry_run: DryRun = False,
    gpu: Gpu = None,
    price_per_hour: Annotated[
        float | None,
        typer.Option(
            "--price-per-hour",
            metavar="<dollars>",
            min=0,
            help="What the GPU machine costs per hour, for --dry-run's estimate (default: the spec's"
            " price_per_hour).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train the LoRA with `accelerate launch -m musubi_tuner.fpack_train_network`.

    Example: fplora train configs/v8.yaml        then: fplora train --resume latest
    """
    from fplora.jobs.context import open_job
    from fplora.jobs.estimate import estimate
    from fplora.jobs.train import run_train

    with common.user_errors():
        if stop_pod not in (None, "success", "always", "never"):
            common.fail("--stop-pod", "must be success, always or never")
        applied = common.load_applied(spec, gpu=gpu)
        job = open_job(applied.spec, dry_run=dry_run)
        if dry_run:
            common.echo_learning_rate(applied.spec)
            for line in estimate(job.plan, applied.choice, price_per_hour=price_per_hour):
                job.say(line)
        raise typer.Exit(run_train(job, resume=resume, stop_pod=stop_pod, with_cache=with_cache))


@app.command(short_help="Batch one-frame inference with trained LoRAs.")
def infer(
    spec: SpecArg = None,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            "--lora",
            metavar="<checkpoint>",
            help="Checkpoint: stepN (global step), latest, final or a file path, or a selection of step"
            " checkpoints: stepA..stepB, every:N, last:K (combine with commas); repeat to compare several."
            " [default: latest]",
        ),
    ] = None,
    multiplier: Annotated[
        list[float] | None,
        typer.Option(
            "--multiplier",
            metavar="<float>",
            help="LoRA multiplier; repeat for several (default: infer.multipliers).",
        ),
    ] = None,
    sweep: Annotated[
        bool | None,
        typer.Option(
            "--sweep/--no-sweep",
            help="One worker process that loads the models once for every cell (default when there are"
            " 2 or more cells), or one generate process per cell.",
            show_default=False,
        ),
    ] = None,
    redo: Annotated[
        bool,
        typer.Option("--redo", help="Sweep: make cells again that are already made with these settings."),
    ] = False,
    strict_captions: Annotated[
        bool,
        typer.Option("--strict-captions", help="A written-out prompt near a training caption is an error."),
    ] = False,
    dry_run: DryRun = False,
    gpu: Gpu = None,
) -> None:
    """Batch one-frame inference with a trained LoRA; outputs go to sample/<version>-stepNNNNNNNN-lm<mult>.

    Each folder holds one LoRA's files: fplora-infer.json records the LoRA and every run into it, and
    a run with another LoRA file is refused. Several cells (checkpoints × multipliers) run in one
    sweep worker that loads the models once, skip cells already made, and end with contact sheets.

    Example: fplora infer --lora step5000 --multiplier 1.2

    Compare: fplora infer --lora step3000..step5000 --lora last:2 --multiplier 1.0 --multiplier 1.2
    (selections: stepA..stepB, every:N, last:K, combined with commas)
    """
    from fplora.jobs.infer import multipliers_to_run, run_infer

    with common.user_errors():
        job = common.job(spec, dry_run=dry_run, gpu=gpu)
        key = "--multiplier" if multiplier else "infer.multipliers"
        multipliers = multipliers_to_run(multiplier or job.plan.spec.infer.multipliers, key)
        command = ["fplora", "infer", common.shown(job.plan.spec.path)]
        command += [word for given in lora or [] for word in ("--lora", given)]
        command += [word for given in multiplier or [] for word in ("--multiplier", str(given))]
        code = run_infer(
            job,
            loras=lora or ["latest"],
            multipliers=multipliers,
            command=shlex.join(command),
            sweep=sweep,
            redo=redo,
            strict_captions=strict_captions,
        )
        raise typer.Exit(code)


@app.command("eval", short_help="Evaluation loss of each checkpoint on held-out records.")
def evaluate(
    spec: SpecArg = None,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            "--lora",
            metavar="<checkpoint>",
            help="Checkpoints to score: all, stepN, latest, final, a path, or stepA..stepB, every:N, last:K;"
            " repeat for several. [default: all]",
        ),
    ] = None,
    untrained: Annotated[
        bool,
        typer.Option("--untrained/--no-untrained", help="Also score the untrained network (the baseline)."),
    ] = True,
    redo: Annotated[
        bool, typer.Option("--redo", help="Score again checkpoints already scored with this setup.")
    ] = False,
    dry_run: DryRun = False,
    gpu: Gpu = None,
) -> None:
    """Score checkpoints by the training loss on the spec's evaluation split (`eval:` in the spec).

    One worker loads the DiT once and computes, for each checkpoint, musubi-tuner's one-frame
    flow-matching loss on the split's cached records at fixed noise levels with fixed noise, the
    same for every checkpoint. Scores are kept in <output_dir>/<output_name>.eval.json and printed
    as a table; the lowest is what `--lora best` means.

    Example: fplora eval configs/v8.yaml --lora step1000..step5000
    """
    from fplora.jobs.eval import ALL, run_eval

    with common.user_errors():
        job = common.job(spec, dry_run=dry_run, gpu=gpu)
        raise typer.Exit(run_eval(job, loras=lora or [ALL], untrained=untrained, redo=redo))


@app.command(short_help="Check this machine before paid GPU time.")
def doctor(spec: SpecArg = None) -> None:
    """What would fail on this machine before the first paid minute: versions, musubi-tuner's options
    against fplora's schema, torch, CUDA and the GPU, accelerate's default config, the tokenizers in the
    Hugging Face cache, attention kernels, the wandb login and free disk. Exit 1 on a fail.

    Example: fplora doctor configs/v8.yaml
    """
    from rich.console import Console

    from fplora.jobs.doctor import run_doctor
    from fplora.problems import UserError
    from fplora.runtime import python_for

    with common.user_errors():
        loaded = None
        try:
            loaded = common.load(spec)  # with its GPU preset: the settings that will run
        except UserError:
            if spec is not None:
                raise  # a spec named but broken is the user's to fix; no spec at all is fine
        raise typer.Exit(run_doctor(loaded, python_for(loaded), Console(highlight=False, soft_wrap=True)))


@app.command(short_help="Show a spec's run: segments, steps, checkpoints.")
def runs(spec: SpecArg = None) -> None:
    """Show a spec's training run: segments, global steps, checkpoints and states.

    Example: fplora runs configs/v8.yaml
    """
    from rich.table import Table

    from fplora.runs.manifest import foreign_run_note
    from fplora.runs.summary import steps_text, summarise

    with common.user_errors():
        loaded = common.load(spec, preset=False)
        note = foreign_run_note(loaded.train.output_dir, loaded.output_name, loaded.path)
        common.echo_problems([note] if note else [])
        rows, unreadable = summarise(loaded)
        common.echo_problems(unreadable)  # then the table: what the run's files still show
        if not any(row.loras or row.states or row.segment.started for row in rows):
            typer.echo(f"{loaded.output_name}: no training yet in {common.shown(loaded.train.output_dir)}")
            raise typer.Exit(1 if unreadable else 0)
        table = Table(title=f"{loaded.output_name} in {common.shown(loaded.train.output_dir)}")
        for column in ("segment", "global steps", "status", "last loss", "LoRAs at step", "states at step"):
            table.add_column(column)
        for row in rows:
            seg = row.segment
            loss = f"{seg.losses[-1]:.4g}" if seg.losses else "—"
            table.add_row(
                seg.output_name,
                f"{seg.step_offset + 1}–{row.end_text}",
                row.status,
                loss,
                steps_text(row.loras),
                steps_text(row.states),
            )
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            console.width = 160  # piped or captured: don't squeeze the table into 80 columns
        console.print(table)
        _best_line(loaded, console)
        if unreadable:
            raise typer.Exit(1)


def _best_line(spec: Spec, console: Console) -> None:
    """Under `fplora runs`' table: the best evaluation step, what `--lora best` takes."""
    from fplora.runs import evaluation

    scores = evaluation.load(spec.train.output_dir, spec.output_name)
    best = scores.best() if scores else None
    if scores is None or best is None:
        return
    trained = sum(p.lora is not None for p in scores.points)
    untrained = next((p for p in scores.points if p.lora is None), None)
    than = f"; untrained {untrained.loss:.5f}" if untrained else ""
    console.print(
        f"best evaluation: {best.label} (loss {best.loss:.5f} of {trained} checkpoints scored{than})"
        " — fplora infer --lora best",
        highlight=False,
        soft_wrap=True,
    )


@app.command(short_help="PNG of training and evaluation loss; several specs compare.")
def plot(
    specs: Annotated[
        list[Path] | None,
        typer.Argument(help="Specs whose runs to draw (default: the last spec used).", show_default=False),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="The PNG to write (default: configs/loss-<versions>.png).")
    ] = None,
    smoothing: Annotated[
        float,
        typer.Option("--smoothing", min=0.0, max=0.999, help="Training-loss smoothing, as TensorBoard's."),
    ] = 0.9,
) -> None:
    """Draw training loss (raw and smoothed) and evaluation loss against global step into a PNG.

    Training loss comes from musubi-tuner's TensorBoard logs when there are any (read without
    tensorboard), else from the console log fplora keeps (musubi-tuner's moving average);
    evaluation loss from `fplora eval`. Needs matplotlib: uv pip install 'fplora[plot]'.

    Example: fplora plot configs/v7.yaml configs/v8.yaml
    """
    from fplora.jobs.plot import default_path, draw
    from fplora.runs.curves import curves_of

    with common.user_errors():
        given: list[Path | None] = list(specs) if specs else [None]
        loaded = [common.load(path, preset=False) for path in given]
        runs = [curves_of(spec) for spec in loaded]
        common.echo_problems([problem for run in runs for problem in run.notes])
        path = out or default_path([s.path for s in loaded], [s.version for s in loaded])
        typer.echo(common.shown(draw(runs, path, smoothing=smoothing)))


@app.command()
def sheet(
    directory: Annotated[
        Path, typer.Argument(help="The folder holding the infer folders (default: outputs' sample/ folder).")
    ],
    version: Annotated[
        str | None,
        typer.Option("--version", help="Only this version's folders (v8). Default: every version."),
    ] = None,
) -> None:
    """Contact sheets from infer folders: checkpoints × multipliers.

    One PNG per prompt (rows are checkpoints, columns multipliers) and an index.html linking every
    image, rebuilt from the folders alone; written to DIRECTORY/<version>-sheet/.

    Example: fplora sheet /workspace/my-project-models/sample --version v8
    """
    from fplora.sheet.draw import build

    with common.user_errors():
        if not directory.is_dir():
            common.fail("DIRECTORY", f"{common.shown(directory)} is not a folder")
        indexes = build(directory, version)
        if not indexes:
            which = f"{version}-" if version else "<version>-"
            common.fail(
                "DIRECTORY",
                f"{common.shown(directory)} holds no infer folder"
                f" ({which}stepNNNNNNNN-lm<m> with fplora-infer.json)",
            )
        for index in indexes:
            typer.echo(common.shown(index))


def main() -> None:
    app()
