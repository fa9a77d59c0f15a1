#!/usr/bin/env python3
"""Rewrite a wheel without some of its files (and without their RECORD lines).

  python3 slim_wheel.py IN.whl OUT.whl 'GLOB' ['GLOB' ...]

Used for bitsandbytes, whose wheel carries one native library per CUDA/ROCm/XPU version (~43 MB):
keeping only the CPU and CUDA 13.x libraries makes it fit a 64 MiB transfer limit.
"""

import fnmatch
import sys
import zipfile


def main():
    src, dst, pats = sys.argv[1], sys.argv[2], sys.argv[3:]

    def drop(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in pats)

    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            if drop(info.filename):
                continue
            data = zi.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = [x for x in data.decode().splitlines() if x and not drop(x.split(",", 1)[0])]
                data = ("\n".join(lines) + "\n").encode()
            zo.writestr(info, data)


if __name__ == "__main__":
    main()
