"""Loss curves of a run against global step (`loss`), read from musubi-tuner's TensorBoard event
files without tensorboard (`tfevents`), fplora's console log or its manifest, and `fplora eval`'s
scores: the data `fplora plot` draws."""
