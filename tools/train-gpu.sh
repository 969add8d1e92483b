#!/usr/bin/env bash
# Train the colour model on a GPU machine, end to end, from one script.
#
#   tools/train-gpu.sh prepare [DATA] [ENCODER] [SIDE] [QUALITY]  # here: an upload in .gpu/
#   tools/train-gpu.sh run MINUTES OUT [ARGS...]  # there: train for MINUTES, results into OUT
#
# `prepare` packs DATA's train/ and val/ photos as SIDE px WebP crops (.pack.npz; 144 px at
# quality 78 is ~40 MB, 208 px at quality 60 ~52 MB), the
# EfficientNet-Lite0 ImageNet weights as float16 (.npz, 6.5 MB) and the wheels that a machine
# with JAX but without Keras lacks. `run` trains the Keras 3 network under JAX with a time
# budget (the learning rate follows a cosine over the epochs that fit), then leaves in OUT the
# run's record (run.json, log.csv, train.log) and its best weights, split into parts under
# 15 MB (join them with `cat best.weights.h5.part-* > best.weights.h5`). The CPU path is the
# same `coloi train` without this script.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${COLOI_GPU_STAGE:-.gpu}

case "${1:-}" in
prepare)
    data=${2:-../shared/data}
    encoder=${3:-../shared/pretrained/efficientnet-lite0-57934424.pth}
    mkdir -p "$stage/whl"
    python - "$data" "$encoder" "$stage" "${4:-144}" "${5:-78}" <<'EOF'
import sys
from pathlib import Path
from coloi.training import data, encoders
source, weights, stage = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
side, quality = int(sys.argv[4]), int(sys.argv[5])
for split in ("val", "train"):
    size = data.write_portable_pack(source / split, stage / f"{split}.pack.npz", side=side,
                                     quality=quality)
    print(f"{split}: {size / 1e6:.1f} MB")
encoders.save_npz(encoders.load_state_dict(weights), stage / "lite0.npz")
EOF
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$stage/whl" keras==3.15.1 namex==0.1.0 optree==0.20.0
    du -sh "$stage"
    ;;
run)
    minutes=${2:?minutes}
    out=${3:?output folder}
    shift 3
    mkdir -p "$out"
    scratch=$(mktemp -d)  # the wheels' site and the run's checkpoints, off the upload
    if ! python3 -c 'import keras' 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$scratch/site" "$stage"/whl/*.whl
    fi
    export PYTHONPATH="$scratch/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    # Two runs can share the GPU, each with a part of its memory.
    export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-.5}
    run="$scratch/run"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    status=0
    python3 -m coloi train "$stage/train.pack.npz" "$run" --val "$stage/val.pack.npz" \
        --encoder efficientnet-lite0 --pretrained "$stage/lite0.npz" --pack-side 144 \
        --size 128 --rebalance 1 --batch-size 64 --learning-rate 1e-3 --workers 12 \
        --epochs 500 --time-budget "$minutes" "$@" 2>&1 | tee "$out/train.log" || status=$?
    cp "$run/run.json" "$run/log.csv" "$out/" 2>/dev/null || true
    if [ -f "$run/best.weights.h5" ]; then
        # The model's weights alone (the training file carries the optimiser's state too).
        python3 -c 'import sys; from pathlib import Path; from coloi.training import export
model, _, _ = export.load_logits_network(Path(sys.argv[1])); model.save_weights(sys.argv[2])' \
            "$run" "$scratch/best.weights.h5"
        split -b 15M -d "$scratch/best.weights.h5" "$out/best.weights.h5.part-"
    fi
    exit "$status"
    ;;
*)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
