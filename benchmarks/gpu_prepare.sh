#!/usr/bin/env bash
# gpu_prepare.sh - run HERE (no GPU), from anywhere: downloads into <repo>/.whl3/ the cp312 wheels of
# fplora's own base dependencies that the GPU machine's image lacks, so that benchmarks/gpu_e2e.py can
# `pip install --target /tmp/site` them there (no network on that machine).
#
#   bash benchmarks/gpu_prepare.sh
#
# The image already has torch, typer, click, rich, pillow, pyyaml, typing-extensions (an older one);
# it has no pydantic, pydantic-core, annotated-types, typing-inspection, ruamel.yaml or tomli-w.
# Versions are read from uv.lock, so the GPU run uses what the tests here use. ruamel.yaml >= 0.19
# needs no ruamel.yaml.clib (fplora's round-trip loader is pure Python), so it is left out.
# typing-extensions is taken too: pydantic 2.14 needs a newer one than torch's pin may give.
# Size: about 3.0 MB (the pydantic-core wheel is most of it); the carried folders must stay < 64 MiB.
# The folder is git-ignored through .git/info/exclude (`/.whl3/` is added when missing). Idempotent.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

plat=(--only-binary=:all: --no-deps --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

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
  if [ -z "$version" ]; then
    echo "gpu_prepare.sh: $name is not in uv.lock" >&2
    exit 1
  fi
  pins+=("$name==$version")
done

mkdir -p .whl3
# one version of each package only: drop wheels of versions the lock no longer pins
for pin in "${pins[@]}"; do
  stem=$(echo "${pin%%==*}" | tr '-' '_')
  for old in .whl3/"$stem"-*.whl; do
    [ -e "$old" ] || continue
    case "$(basename "$old")" in
      "$stem-${pin##*==}-"*) ;;
      *) echo "removing $old (uv.lock pins ${pin##*==})" >&2; rm -f "$old" ;;
    esac
  done
done
python3 -m pip download -q "${plat[@]}" -d .whl3 "${pins[@]}"

exclude=.git/info/exclude
if [ -f "$exclude" ] && ! grep -qxF '/.whl3/' "$exclude"; then
  echo '/.whl3/' >> "$exclude"
fi

ls -1 .whl3
echo "pins: ${pins[*]}"
du -sb .whl3 | awk '{printf "%s bytes in .whl3\n", $1}'
du -sb .whl .whl2 .musubi .hf .gpu-e2e .whl3 2>/dev/null | awk '{s += $1} END {printf "%d bytes in the carried folders (limit 67108864 with the working tree)\n", s}'
