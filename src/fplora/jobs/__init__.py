"""What each verb does, start to end: one module per job (`check`, `render`, `cache`, `train`,
`infer`, `eval`, `runs`, `plot`, `sheet`, `init`, `doctor/`).

A job decides (through the data and rules of `runs/` and `datasets/`, which return results and
notes), then runs (through `process`), and prints in one place (`output` for the short verbs,
`context.Job` for those that run musubi-tuner). The CLI only parses its options, calls a job and
exits with the job's code; nothing below this package imports it.
"""
