"""fplora's side of the protocols its workers speak (`fplora/worker/`, run in the musubi-tuner
Python): the plan a worker reads, the events it prints among musubi-tuner's output, and the version
of each. The workers are package data no module of fplora imports, so each constant is written twice,
here and in its worker; tests hold the two equal and run the real worker files against these readers.
"""
