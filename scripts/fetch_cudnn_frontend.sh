#!/bin/sh
# scripts/fetch_cudnn_frontend.sh VERSION DEST: the cuDNN frontend's headers (NVIDIA's header-only C++ graph API,
# MIT licence) of that version into DEST/include, from its PyPI wheel nvidia-cudnn-frontend (the headers are the
# same in every wheel of a version; the one for CPython 3.11 on manylinux x86_64 is fetched whatever Python runs
# pip). make setup runs it; a failure only warns: the build then leaves cuDNN's attention out.
set -u
ver=$1 dest=$2
if [ -f "$dest/include/cudnn_frontend.h" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$ver" ]; then exit 0; fi
tmp=$(mktemp -d) || exit 0
trap 'rm -rf "$tmp"' EXIT
pip=
for p in "python3 -m pip" ".venv/bin/python -m pip"; do
    if $p --version >/dev/null 2>&1; then pip=$p; break; fi
done
if [ -z "$pip" ]; then
    echo "warning: no pip to fetch the cuDNN frontend $ver: cuDNN attention off"; exit 0
fi
echo "fetching the cuDNN frontend $ver headers into $dest (cuDNN's fused attention)"
if ! $pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
        --platform manylinux_2_28_x86_64 -d "$tmp" "nvidia-cudnn-frontend==$ver" >"$tmp/log" 2>&1; then
    echo "warning: could not download nvidia-cudnn-frontend==$ver (cuDNN attention off):"; tail -n 3 "$tmp/log"; exit 0
fi
whl=$(ls "$tmp"/nvidia_cudnn_frontend-*.whl 2>/dev/null | head -n 1)
if [ -z "$whl" ] || ! python3 - "$whl" "$tmp/x" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("include/")])
PY
then echo "warning: could not unpack the cuDNN frontend wheel: cuDNN attention off"; exit 0; fi
if ! [ -f "$tmp/x/include/cudnn_frontend.h" ]; then
    echo "warning: the cuDNN frontend wheel holds no include/cudnn_frontend.h: cuDNN attention off"; exit 0
fi
rm -rf "$dest" && mkdir -p "$dest" && mv "$tmp/x/include" "$dest/include" && echo "$ver" > "$dest/VERSION"
