"""What each verb does, start to end: one module per job (`cache`, `train`, `resume`, `infer`).

A job decides (through the data and rules of `runs/` and `datasets/`, which return results and
notes), then runs (through `process`), and prints in one place. The CLI only parses its options,
calls a job and exits with the job's code; nothing below this package imports it.
"""
