"""A trained LoRA file: its tensors, the layouts front ends load, its metadata and model card."""
