"""`fplora rehearse`: the spec's rendered commands and files, run by musubi-tuner's own code on tiny
stand-in models, in seconds, before any GPU time.

Why: `fplora check` knows the mistakes someone wrote a rule for; musubi-tuner's four scripts have
hundreds of options, and a setting check accepts can still kill a run minutes in, after the models
loaded. A rehearsal runs the real code path instead: the Plan that `train`, `cache` and `infer` would
run, changed only in the model paths (stand-ins fplora makes: `worker/rehearse_standins.py`), the
records (a few real ones of every dataset and of the evaluation split, with their images and
captions), the step counts and the output folders. Stages: caching, 2 training steps with sampling
at first, a 1-step resume from the state, generate with each distinct prompt setting once, one
sweep-worker cell and the evaluation worker on one checkpoint. They run in one worker process
(`worker/rehearse.py`) that imports musubi-tuner once; each stage has a time limit.

A failure names the stage, the command, musubi-tuner's own last error line and the spec lines that
rendered the options involved. A pass is remembered (`.fplora/rehearsed/`) with a fingerprint of what
was rehearsed (rendered files and commands, records, fplora version, musubi-tuner commit), so that
`train`, `cache`, `infer` and `eval` rehearse again only when that changed.

One job per module: `stages` plans the rehearsal from the spec's Plan, `checks` says what each stage
must leave behind, `watch` runs and watches the worker, `machine` tells the machine's shortcomings from
the spec's, `blame` names the spec lines of a failure, `remembered` keeps the passes, `report` is
what `fplora rehearse` and the gate before the other verbs print.
"""

from fplora.jobs.rehearse.report import gate, rehearse, run_rehearse

__all__ = ["gate", "rehearse", "run_rehearse"]
