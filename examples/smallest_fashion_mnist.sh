#!/usr/bin/env bash
# Beyond the paper: a small fully-connected MetaKAN (B-spline, 784-32-10) on Fashion-MNIST, clustered with
# k = 4 / 16 per layer, int8 codebooks and rANS-coded indices, then fine-tuned; and its size-accuracy sweep.
# About 20 min on 2 cores. Needs Fashion-MNIST (apt-get install dataset-fashion-mnist) and, for the plot,
# matplotlib (pip install -e ".[plot]").
#   bash examples/smallest_fashion_mnist.sh [workdir] [--write-results]
# Everything is written into the work folder (default runs/smallest-fmnist); the sweep CSV and PNG are copied into
# examples/results/ only with --write-results. A MetaKAN already in the work folder is reused only if this
# kancompress version wrote it (it says so).
set -euo pipefail
results=$(cd "$(dirname "$0")" && pwd)/results
work=runs/smallest-fmnist; publish=0
for arg in "$@"; do
  case "$arg" in
    --write-results) publish=1 ;;
    *) work=$arg ;;
  esac
done
k="kancompress"
command -v $k >/dev/null || { echo "install kancompress first: pip install -e ." >&2; exit 1; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "needs Fashion-MNIST: apt-get install dataset-fashion-mnist" >&2; exit 1; }
python -c "import matplotlib" 2>/dev/null || { echo "the sweep plot needs matplotlib: pip install -e '.[plot]'" >&2; exit 1; }
mkdir -p "$work" && cd "$work"
version=$($k --version)
# 1. The MetaKAN, with the paper's hyperparameters (Table 5: 50 epochs max, patience 10, lr_h 5e-4, lr_e 5e-3).
if [ -f metakan.safetensors ] && [ "$(cat metakan.version 2>/dev/null)" = "$version" ]; then
  echo "reusing $work/metakan.safetensors (written by $version)"
else
  $k train --meta --dataset fashion-mnist -o metakan.safetensors --force && echo "$version" > metakan.version
fi
# 2. Cluster: 4 centroids for the 25,088 first-layer edges, 16 for the 320 second-layer ones; int8 codebooks
#    with one scale per layer; indices rANS-coded; only stage and dataset kept in the metadata.
$k cluster metakan.safetensors -k 16 --layer-k 0=4 --codebook-dtype int8 --index-coding rans \
    --lean-metadata -o clustered.safetensors --force
# 3. Fine-tune the codebooks (indices frozen), lr 1e-3, at most 10 epochs, early stopping patience 3.
$k finetune clustered.safetensors --lr 1e-3 --epochs 10 --lean-metadata -o smallest.safetensors --force
for f in metakan clustered smallest; do $k eval $f.safetensors; done
$k inspect smallest.safetensors
ls -l smallest.safetensors
# 4. The size-accuracy curve of the same MetaKAN: every layer at each k, int8 codebooks, rANS indices,
#    2 fine-tuning epochs per point.
$k sweep metakan.safetensors --ks 2,4,8,16,32,64 --finetune-epochs 2 --codebook-dtype int8 \
    --index-coding rans -o sweep-fashion-mnist-metakan.csv --plot sweep-fashion-mnist-metakan.png --force
if [ "$publish" = 1 ]; then
  cp sweep-fashion-mnist-metakan.csv sweep-fashion-mnist-metakan.png "$results/"
fi
