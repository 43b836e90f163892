#!/usr/bin/env bash
# Building and testing hgrn2 on a GPU machine that has no network and lacks the Debian development packages:
# what it needs is gathered into .carry (git-ignored) on a machine that has both, and set up on the other.
#
#   bash scripts/offline_deps.sh fetch   on a Debian 12 machine with network, after `make setup`: the libraries'
#                                        packages into .carry/debs, the fla wheels and einops into .carry, the
#                                        GPU tests' text into .carry/shared, the cuDNN frontend's headers, and the
#                                        CUDA objects this tree built (the kernels take minutes to compile) into
#                                        .carry/obj, with a checksum of the sources they were built from
#   . scripts/offline_deps.sh env        on the GPU machine, from the repository root (sourced): the packages
#                                        unpacked under /tmp/hgrn2-deps (never over /), the compiler's and the
#                                        loader's paths set, HGRN2_SHARED set to .carry/shared, and the carried
#                                        objects put in build/ newer than their sources where the sources'
#                                        checksum is the one they were built from (else make compiles them)
#
#   bash scripts/offline_deps.sh sum     the checksum of the sources the CUDA objects are built from
#
# Then `make -j16 hgrn2`, `make test-gpu`, and the scripts of scripts/ run as on any machine. A build there
# without PCRE2, utf8proc or libjpeg in /usr/include leaves those parts out (the Makefile says so); the GPU
# tests need none of them.
PKGS="libzstd-dev libzstd1 libpng-dev libpng16-16 zlib1g-dev zlib1g"
# what the carried objects were built from: a change to any of these makes them stale
obj_sum() { cat kernels.cu cuda/* cuda_ops.h common.h Makefile 2>/dev/null | sha256sum | cut -c1-16; }

offline_fetch() {
    set -e
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    mkdir -p .carry/debs .carry/obj .carry/shared/data/text
    (cd .carry/debs && apt-get download $PKGS 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
    python3 -m pip download --no-deps -q -d .carry flash-linear-attention fla-core einops
    local shared=${HGRN2_SHARED:-../shared}
    cp "$shared/data/text/tinyshakespeare.txt" .carry/shared/data/text/
    local n=0
    rm -f .carry/obj/*.o.gz   # objects of an earlier build are not this one's
    for o in build/kernels-cudnn.o build/kernels.o build/attention_cudnn.o; do
        [ -f "$o" ] || continue
        gzip -1 -c "$o" > ".carry/obj/$(basename "$o").gz"
        n=$((n + 1))
    done
    obj_sum > .carry/obj/SOURCES
    # the cuDNN frontend's headers (make setup fetched them), without which the build leaves cuDNN out
    [ -d build/cudnn_frontend ] && rm -rf .carry/cudnn_frontend && cp -r build/cudnn_frontend .carry/
    echo "offline_deps: $(ls .carry/debs | wc -l) packages, $(ls .carry/*.whl | wc -l) wheels, $n objects; .carry holds $(du -sh .carry | cut -f1)"
    set +e
}

offline_env() {
    mkdir -p /tmp/hgrn2-deps
    for f in .carry/debs/*.deb; do [ -f "$f" ] || continue; dpkg -x "$f" /tmp/hgrn2-deps || return 1; done
    export CPATH=/tmp/hgrn2-deps/usr/include:/tmp/hgrn2-deps/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}
    export LIBRARY_PATH=/tmp/hgrn2-deps/usr/lib/x86_64-linux-gnu:/tmp/hgrn2-deps/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
    export LD_LIBRARY_PATH=$LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export HGRN2_SHARED=${HGRN2_SHARED:-$PWD/.carry/shared}
    if ls .carry/einops-*.whl > /dev/null 2>&1 && ! python3 -c 'import einops' 2> /dev/null; then
        python3 -m pip install --no-deps -q .carry/einops-*.whl
    fi
    if [ -d .carry/cudnn_frontend ] && [ ! -d build/cudnn_frontend ]; then
        mkdir -p build && cp -r .carry/cudnn_frontend build/
    fi
    if [ -f .carry/obj/SOURCES ] && [ "$(cat .carry/obj/SOURCES)" = "$(obj_sum)" ]; then
        mkdir -p build
        for z in .carry/obj/*.o.gz; do
            [ -f "$z" ] || continue
            gunzip -c "$z" > "build/$(basename "$z" .gz)" && touch "build/$(basename "$z" .gz)"
        done
        echo "offline_deps: the carried objects are in build/"
    else
        echo "offline_deps: no carried objects for these sources; make compiles them"
    fi
}

case "${1:-}" in
    fetch) offline_fetch ;;
    env) offline_env ;;
    sum) obj_sum ;;
    *) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
       [ "${BASH_SOURCE[0]}" = "$0" ] && exit 2 || return 2 ;;
esac
