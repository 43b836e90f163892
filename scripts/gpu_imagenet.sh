#!/usr/bin/env bash
# ImageNet's throughput on a GPU machine without ImageNet: synthetic JPEGs of ImageNet's typical size
# (500 x 375 and up, from tests/bin/test_jpeg --make-images), prepared as `prepare --task imagenet` prepares
# the real folders, then `bench --task imagenet` (the loader alone, the training steps alone) and a short
# `train --task imagenet` that prints how long the trainer waited for the loader.
#
#   scripts/gpu_imagenet.sh [PRESET] [STEPS] [CLASSES] [PER_CLASS]
#     PRESET imagenet-tiny (default) or imagenet-small; STEPS of training (default 60);
#     CLASSES x PER_CLASS training images (default 100 x 120), a tenth of that for validation.
# The work folder is $WORK (default /tmp/hgrn2-imagenet); its prepared data is reused when present.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-imagenet-tiny} STEPS=${2:-60} CLASSES=${3:-100} PER=${4:-120}
WORK=${WORK:-/tmp/hgrn2-imagenet}
make -s hgrn2 tests/bin/test_jpeg
mkdir -p "$WORK"
if [ ! -f "$WORK/data/train.jpegs" ]; then
    rm -rf "$WORK/jpeg" "$WORK/data"
    t0=$SECONDS
    tests/bin/test_jpeg --make-images "$WORK/jpeg" "$CLASSES" "$PER" $((PER / 10 > 0 ? PER / 10 : 1)) 500 375
    echo "wrote $((CLASSES * PER)) + $((CLASSES * (PER / 10))) JPEGs in $((SECONDS - t0)) s"
    t0=$SECONDS
    ./hgrn2 prepare --task imagenet --input "$WORK/jpeg" --out "$WORK/data"
    echo "prepared in $((SECONDS - t0)) s"
fi
echo "== bench --task imagenet --preset $PRESET =="
./hgrn2 bench --task imagenet --preset "$PRESET" --data "$WORK/data" --device cuda
echo "== train --task imagenet --preset $PRESET, $STEPS steps =="
rm -rf "$WORK/run"
./hgrn2 train --task imagenet --preset "$PRESET" --data "$WORK/data" --out "$WORK/run" --steps "$STEPS" \
    --eval-every 0 --eval-batches 2 --log-every 10 --device cuda
