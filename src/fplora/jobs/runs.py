"""`fplora runs`: a spec's training run as a table, segment by segment, and the best evaluation."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fplora.check.run_names import foreign_run
from fplora.jobs import output
from fplora.problems import plural
from fplora.runs.catalogue import Catalogue
from fplora.runs.summary import steps_text, summarise
from fplora.spec.models import Spec

COLUMNS = ("segment", "global steps", "status", "last loss", "LoRAs at step", "states at step")


def run_runs(spec: Spec) -> int:
    """Print the run's table (stdout) and what kept it from being whole (stderr); 1 when a file of
    the run could not be read."""
    run = Catalogue.of(spec)
    output.problems(foreign_run(spec, run))  # the warning check gives every command that opens a job
    rows, unreadable = summarise(run)
    output.problems(unreadable)  # then the table: what the run's files still show
    where = output.shown(spec.train.output_dir)
    if not any(row.loras or row.states or row.segment.started for row in rows):
        output.line(f"{spec.output_name}: no training yet in {where}")
        return 1 if unreadable else 0
    table = Table(title=f"{spec.output_name} in {where}")
    for column in COLUMNS:
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
    console = Console()
    if not console.is_terminal:
        console.width = 160  # piped or captured: don't squeeze the table into 80 columns
    console.print(table)
    best = best_line(run)
    if best:
        console.print(best, highlight=False, soft_wrap=True)
    return 1 if unreadable else 0


def best_line(run: Catalogue) -> str:
    """Under the table: the best evaluation step, what `--lora best` takes ("" when none)."""
    scores = run.scores
    best = scores.best() if scores else None
    if scores is None or best is None:
        return ""
    trained = sum(p.lora is not None for p in scores.points)
    untrained = next((p for p in scores.points if p.lora is None), None)
    than = f"; untrained {untrained.loss:.5f}" if untrained else ""
    return (
        f"best evaluation: {best.label} (loss {best.loss:.5f}"
        f" of {plural(trained, 'checkpoint')} scored{than})"
        " — fplora infer --lora best"
    )
