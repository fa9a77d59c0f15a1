"""fplora: FramePack one-frame LoRA training with musubi-tuner, from one validated YAML spec."""

__version__ = "0.1.0"
