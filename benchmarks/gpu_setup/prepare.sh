#!/usr/bin/env bash
# prepare.sh - run HERE (no GPU, network to PyPI), from anywhere: makes, in the repo root, the folders a
# GPU call carries (the GPU machine has no network and cannot see ../shared). Idempotent: what is
# there already is kept, so a second run only checks and prints the sizes.
#
#   bash benchmarks/gpu_setup/prepare.sh [--source TARBALL] [--video]
#
#   --source TARBALL  the pinned musubi-tuner source, a `git archive` of src/ and pyproject.toml at the
#                     commit fplora pins (default: ../shared/musubi-tuner/musubi-tuner-src-*.tar.gz beside
#                     the repo, checked against src/fplora/musubi/schema.json's commit)
#   --video           also .whl2 (PyAV, 34 MB). Without it the install stage puts a stub in its place,
#                     which is enough for every stage that writes no video (all of them today)
#
# Folders (git-ignored through .gitignore), sizes as of 2026-12:
#   .whl/     cp312 wheels of musubi-tuner's pins the GPU image lacks, and a bitsandbytes wheel without its
#             CUDA 11/12, ROCm and XPU libraries (slim_wheel.py)                                   ~27 MB
#   .whl2/    (--video) av==14.0.1: musubi-tuner imports PyAV at import time, uses it for video    ~34 MB
#   .whl3/    fplora's own dependencies the image lacks (pydantic, pydantic-core, annotated-types,
#             typing-inspection, typing-extensions, ruamel.yaml, tomli-w) at uv.lock's versions      ~3 MB
#   .musubi/  musubi-tuner-src.tar.gz (the pinned tarball, copied) and COMMIT                   ~0.8 MB
#   .hf/hub/  stand-in tokenizers in Hugging Face cache layout (make_hf_cache.py)               ~0.1 MB
# A call carries 64 MiB at most, the working tree included: carry `.whl .whl3 .musubi .hf` (~31 MB),
# and `.whl2` too only for video. The last line says what to carry and what it weighs.
#
# Env: PYTHON, a Python with `tokenizers` for the stand-in tokenizers (default: a throwaway venv
# /tmp/fplora-gpu-tokenizers made with uv).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
source="" video=0
while [ $# -gt 0 ]; do
  case $1 in
    --source) source=$2; shift 2 ;;
    --video) video=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "prepare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
say() { echo "prepare.sh: $*" >&2; }
cd "$repo"

# the wheels are for the GPU image's Python: CPython 3.12 on x86-64 Linux
plat=(--only-binary=:all: --no-deps --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
download() { python3 -m pip download -q --disable-pip-version-check "${plat[@]}" "$@"; }

# 1. the pinned musubi-tuner source: the same tarball CI and scripts/musubi-python.sh use
pinned=$(sed -n 's/.*"musubi_tuner_commit": *"\([0-9a-f]*\)".*/\1/p' src/fplora/musubi/schema.json | head -n 1)
if [ -z "$source" ]; then
  source=$(ls "$repo"/../shared/musubi-tuner/musubi-tuner-src-*.tar.gz 2>/dev/null | head -n 1 || true)
  [ -n "$source" ] || { say "no musubi-tuner-src-*.tar.gz in $repo/../shared/musubi-tuner/: pass --source"; exit 2; }
fi
[ -f "$source" ] || { say "$source: not found"; exit 2; }
if [ -f "$(dirname "$source")/COMMIT" ]; then
  commit=$(tr -d '[:space:]' <"$(dirname "$source")/COMMIT")
else
  case $(basename "$source") in
    *"${pinned:0:8}"*) commit=$pinned ;;
    *) say "no COMMIT beside $source and its name does not carry ${pinned:0:8}: cannot tell its commit"; exit 1 ;;
  esac
fi
if [ "$commit" != "$pinned" ]; then
  say "$source is musubi-tuner $commit, but fplora pins $pinned (src/fplora/musubi/schema.json)"
  exit 1
fi
mkdir -p .musubi
if ! cmp -s "$source" .musubi/musubi-tuner-src.tar.gz || [ "$(cat .musubi/COMMIT 2>/dev/null)" != "$commit" ]; then
  tar -tzf "$source" src/musubi_tuner/fpack_train_network.py >/dev/null  # the layout install.sh unpacks
  cp "$source" .musubi/musubi-tuner-src.tar.gz.part
  mv .musubi/musubi-tuner-src.tar.gz.part .musubi/musubi-tuner-src.tar.gz
  echo "$commit" >.musubi/COMMIT
fi

# 2. musubi-tuner's pins that the GPU image lacks or has at versions they exclude (transformers 4.57.6
#    needs huggingface-hub<1.0 and tokenizers<=0.23.0; the image has 1.x / 0.23.2). The image already
#    has torch, torchvision, numpy, pillow, opencv, safetensors, einops, sentencepiece and the like.
mkdir -p .whl
download -d .whl "transformers==4.57.6" "huggingface-hub==0.34.3" "tokenizers==0.22.1" "diffusers==0.32.1" \
  "accelerate==1.6.0" "toml==0.10.2" "voluptuous==0.15.2" "ftfy==6.3.1" "easydict==1.13" "wcwidth==0.9.4" \
  "importlib-metadata==8.7.0"
if ! ls .whl/bitsandbytes-*.whl >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  download -d "$tmp" "bitsandbytes==0.50.2"
  whl=$(ls "$tmp"/bitsandbytes-*.whl)
  python3 "$here/slim_wheel.py" "$whl" ".whl/$(basename "$whl")" 'bitsandbytes/libbitsandbytes_cuda1[12]*.so' \
    'bitsandbytes/libbitsandbytes_rocm*.so' 'bitsandbytes/libbitsandbytes_xpu*.so'
  rm -rf "$tmp"
fi
if [ "$video" = 1 ]; then
  mkdir -p .whl2
  download -d .whl2 "av==14.0.1"
fi

# 3. fplora's own dependencies at uv.lock's versions, so the GPU run uses what the tests here use.
#    ruamel.yaml >= 0.19 needs no ruamel.yaml.clib; typing-extensions is taken too, since pydantic
#    needs a newer one than the image's torch pins.
lock_version() {  # the version uv.lock pins for a package (normalised name)
  awk -v want="$1" '
    /^\[\[package\]\]/ { name = "" }
    /^name = / { gsub(/"/, "", $3); name = $3 }
    /^version = / && name == want { gsub(/"/, "", $3); print $3; exit }
  ' uv.lock
}
pins=()
for name in pydantic pydantic-core annotated-types typing-inspection typing-extensions ruamel-yaml tomli-w; do
  version=$(lock_version "$name")
  [ -n "$version" ] || { say "$name is not in uv.lock"; exit 1; }
  pins+=("$name==$version")
done
mkdir -p .whl3
for pin in "${pins[@]}"; do  # one version of each: drop wheels of versions the lock no longer pins
  stem=$(echo "${pin%%==*}" | tr '-' '_')
  for old in .whl3/"$stem"-*.whl; do
    [ -e "$old" ] || continue
    case "$(basename "$old")" in
      "$stem-${pin##*==}-"*) ;;
      *) say "removing $old (uv.lock pins ${pin##*==})"; rm -f "$old" ;;
    esac
  done
done
download -d .whl3 "${pins[@]}"

# 4. stand-in tokenizers for the two that musubi-tuner fetches by repo id
if [ ! -f .hf/hub/models--hunyuanvideo-community--HunyuanVideo/refs/main ]; then
  py=${PYTHON:-}
  if [ -z "$py" ]; then
    py=/tmp/fplora-gpu-tokenizers/bin/python
    if ! "$py" -c "import tokenizers" 2>/dev/null; then
      uv venv -q --allow-existing /tmp/fplora-gpu-tokenizers
      uv pip install -q --python "$py" "tokenizers==0.22.1"
    fi
  fi
  rm -rf .hf/hub/models--hunyuanvideo-community--HunyuanVideo
  "$py" "$here/make_hf_cache.py" .hf/hub
fi

# what a call carries, and whether it fits
carry=(.whl .whl3 .musubi .hf)
[ "$video" = 1 ] && carry+=(.whl2)
du -sb "${carry[@]}" | awk '{printf "%10d  %s\n", $1, $2}'
tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | awk 'END {print $1}')
folders=$(du -scb "${carry[@]}" | awk 'END {print $1}')
printf 'carry: %s (%d bytes) + the working tree (%d bytes) = %d of 67108864 bytes\n' \
  "${carry[*]}" "$folders" "$tree" $((folders + tree))
if [ $((folders + tree)) -gt 67108864 ]; then
  say "over the 64 MiB a call may carry"
  exit 1
fi
