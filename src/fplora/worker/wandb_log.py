"""Adds fplora's own figures to a training's wandb run: evaluation losses at global steps, contact
sheets as images. Run as a file by a Python that has wandb (the musubi-tuner Python, which has it
when the spec logs to wandb); fplora never imports wandb. No module of fplora imports this file.

Protocol: one argument, a JSON file
`{"project", "id", "name", "group", "tags", "points": [{"label", "step", "loss"}], "best": {...} | null,
"sheets": [{"path", "caption"}], "sheet_step": int}`.
It resumes the run by id (`resume="allow"`: created when training never logged to wandb) and logs
each value with `global_step` as its x-axis (`define_metric`), not as wandb's own step: the run's
steps are the training's, already past every checkpoint being scored, and wandb ignores a step lower
than one the run has. Prints `fplora-wandb {"run": <id>, "logged": n}` at the end.
"""

import json
import sys


def main(path: str) -> int:
    import wandb

    with open(path, encoding="utf-8") as handle:
        job = json.load(handle)
    run = wandb.init(
        project=job["project"],
        id=job["id"],
        resume="allow",
        name=job.get("name"),
        group=job.get("group"),
        tags=job.get("tags"),
    )
    run.define_metric("global_step")
    run.define_metric("eval/*", step_metric="global_step")
    run.define_metric("sheets/*", step_metric="global_step")
    logged = 0
    for point in sorted(job["points"], key=lambda p: p["step"]):
        run.log({"eval/loss": point["loss"], "global_step": point["step"]})
        logged += 1
    best = job.get("best")
    if best:
        run.summary["eval/best_loss"] = best["loss"]
        run.summary["eval/best_step"] = best["step"]
    images = [wandb.Image(sheet["path"], caption=sheet["caption"]) for sheet in job.get("sheets", [])]
    if images:
        run.log({"sheets/contact_sheets": images, "global_step": job.get("sheet_step", 0)})
        logged += len(images)
    run.finish()
    print("fplora-wandb " + json.dumps({"run": job["id"], "logged": logged}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
