"""Spec → musubi-tuner files and command lines (pure functions)."""
