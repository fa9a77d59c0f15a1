"""Where the five FramePack models and the tokenizers come from (musubi-tuner's docs/framepack.md).

Each model file is downloaded from its Hugging Face repository into the layout that `fplora init`'s
base.yaml names under `models.dir`; the tokenizers are loaded by musubi-tuner with
`from_pretrained("hunyuanvideo-community/HunyuanVideo", subfolder=...)`, so they go into the
Hugging Face cache (`HF_HOME`), where that call finds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fplora.musubi.names import TOKENIZER_REPO

HUNYUAN = "hunyuanvideo-community/HunyuanVideo"
FRAMEPACK = "lllyasviel/FramePackI2V_HY"
REDUX = "lllyasviel/flux_redux_bfl"
DIT_FOLDER = "diffusion_models/FramePackI2V_HY"


@dataclass(frozen=True)
class HubFile:
    key: str  # the spec's `models.<key>`, or "tokenizer"
    repo: str
    filename: str  # in the repository
    folder: str  # under models.dir: the file lands at <dir>/<folder>/<filename>

    @property
    def local(self) -> str:
        """Its path under models.dir."""
        return f"{self.folder}/{self.filename}" if self.folder else self.filename

    @property
    def in_cache(self) -> bool:
        return self.key == "tokenizer"


def _shards(key: str, repo: str, stem: str, count: int, folder: str) -> list[HubFile]:
    return [
        HubFile(key, repo, f"{stem}-{k:05d}-of-{count:05d}.safetensors", folder) for k in range(1, count + 1)
    ]


MODELS: tuple[HubFile, ...] = (
    *_shards("dit", FRAMEPACK, "diffusion_pytorch_model", 3, DIT_FOLDER),
    HubFile("vae", HUNYUAN, "vae/diffusion_pytorch_model.safetensors", ""),
    *_shards("text_encoder1", HUNYUAN, "text_encoder/model", 4, ""),
    HubFile("text_encoder2", HUNYUAN, "text_encoder_2/model.safetensors", ""),
    HubFile("image_encoder", REDUX, "image_encoder/model.safetensors", ""),
)
"""The model files, in the base.yaml layout (`dit: diffusion_models/FramePackI2V_HY/...-00001-of-00003`,
`vae: vae/diffusion_pytorch_model.safetensors`, ...)."""

TOKENIZERS: tuple[HubFile, ...] = tuple(
    HubFile("tokenizer", TOKENIZER_REPO, name, "")
    for name in (
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer_2/merges.txt",
        "tokenizer_2/special_tokens_map.json",
        "tokenizer_2/tokenizer_config.json",
        "tokenizer_2/vocab.json",
    )
)
