"""Code that runs inside the musubi-tuner Python, not in fplora's: package data, started as a file.

fplora itself never imports torch or musubi-tuner (tests/test_architecture.py holds it to that), so
work that needs the models in memory across several steps is a separate process: fplora writes a
plan, starts `accelerate launch <this folder>/<worker>.py --plan <file>` with the musubi-tuner
Python, and reads the worker's JSON-lines events. A worker imports the standard library and torch,
and its siblings only by their path (the musubi-tuner Python need not have fplora installed): the
sweep and evaluation workers share `common.py` (event lines, plan reading, command line) and reach
musubi-tuner only through `musubi_calls.py`, where every musubi-tuner call is named with its
parameters at the pinned commit. No module of fplora imports a worker.
"""
