#!/usr/bin/env python3
"""Build an offline stand-in for the two Hugging Face tokenizers that musubi-tuner's FramePack
loaders fetch by repo id ("hunyuanvideo-community/HunyuanVideo", subfolders tokenizer/ and
tokenizer_2/), laid out as a hub cache (models--ORG--NAME/snapshots/<rev>/..., refs/main).

  python3 make_hf_cache.py OUT_DIR        # OUT_DIR becomes HF_HUB_CACHE (e.g. .hf/hub)

Needs only the `tokenizers` package. Nothing here is the real tokenizer: ids are small
(< 1000), so they stay far below the text encoders' vocab sizes (128320 / 49408).

tokenizer/   a byte-level BPE "fast" tokenizer (tokenizer.json) for LlamaTokenizerFast, with the
             Llama-3 header tokens as special tokens.  Its vocab size is chosen so that the
             HunyuanVideo video prompt-template prefix (BOS + system part + user header) encodes to
             exactly PREFIX_TOKENS tokens: musubi-tuner crops the LLM output at a fixed index (95,
             the count for the real tokenizer) and asserts that what remains is unpadded.
tokenizer_2/ a CLIP-style vocab.json + merges.txt for the slow CLIPTokenizer (character level:
             an empty merge list, every byte-unicode character and its '</w>' form in the vocab).
"""

import json
import os
import sys

PREFIX_TOKENS = 95
REPO = "hunyuanvideo-community/HunyuanVideo"
REVISION = "0000000000000000000000000000000000000e2e"  # fake commit hash of the stand-in snapshot

LLAMA_SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
# The system part of HunyuanVideo's "dit-llm-encode-video" template, written out from its published
# wording, only to size the stand-in vocabulary (see module doc).
SYSTEM_TEXT = (
    "Describe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:"
)
PREFIX = (
    "<|start_header_id|>system<|end_header_id|>\n\n"
    + SYSTEM_TEXT
    + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
)
EXTRA_CORPUS = [
    "a character turns around slowly, studio lighting, plain background",
    "the camera zooms in on the face, soft light, anime style illustration",
    "a person changes clothes, kisekae style, full body, white background",
    "synthetic smooth color field used for an end to end test of one frame training",
]


def write_json(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1)


def train_llama_like(vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    # no regex word split: merges may cross word boundaries, so the prefix length can be tuned 1 by 1
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=LLAMA_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([SYSTEM_TEXT, *EXTRA_CORPUS], trainer=trainer)
    bos = LLAMA_SPECIAL[0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return tok


def prefix_len(tok):
    return len(tok.encode(PREFIX).ids)


def build_llama(dst):
    # more merges -> fewer tokens; find the smallest vocab whose prefix length is PREFIX_TOKENS
    lo, hi = 262, 2000
    best = None
    for vs in range(lo, hi, 1):
        tok = train_llama_like(vs)
        n = prefix_len(tok)
        if n == PREFIX_TOKENS:
            best = tok
            break
        if n < PREFIX_TOKENS:
            break
    if best is None:
        raise SystemExit(f"could not size the stand-in tokenizer to {PREFIX_TOKENS} prefix tokens")
    os.makedirs(dst, exist_ok=True)
    best.save(os.path.join(dst, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>",
        "pad_token": "<|end_of_text|>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": True,
        "model_max_length": 131072,
        "padding_side": "right",
    }
    write_json(os.path.join(dst, "tokenizer_config.json"), cfg)
    special = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token")}
    write_json(os.path.join(dst, "special_tokens_map.json"), special)
    return best.get_vocab_size(), prefix_len(best)


def bytes_to_unicode():
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_clip(dst):
    os.makedirs(dst, exist_ok=True)
    chars = bytes_to_unicode()
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for s in ["<|startoftext|>", "<|endoftext|>"]:  # last ids, so the highest id marks the end
        vocab[s] = len(vocab)
    write_json(os.path.join(dst, "vocab.json"), vocab)
    with open(os.path.join(dst, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    cfg = {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 77,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    write_json(os.path.join(dst, "tokenizer_config.json"), cfg)
    special = {k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    write_json(os.path.join(dst, "special_tokens_map.json"), special)
    return len(vocab)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    hub = sys.argv[1]
    org, name = REPO.split("/")
    root = os.path.join(hub, f"models--{org}--{name}")
    snap = os.path.join(root, "snapshots", REVISION)
    n1, p = build_llama(os.path.join(snap, "tokenizer"))
    n2 = build_clip(os.path.join(snap, "tokenizer_2"))
    os.makedirs(os.path.join(root, "refs"), exist_ok=True)
    with open(os.path.join(root, "refs", "main"), "w") as f:
        f.write(REVISION)
    print(f"stand-in {REPO}: tokenizer vocab {n1} (template prefix {p} tokens), tokenizer_2 vocab {n2}")
    print(f"  in {root}")


if __name__ == "__main__":
    main()
