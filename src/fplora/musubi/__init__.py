"""musubi-tuner and accelerate interface knowledge: the bundled schemas and every name they use."""
