#!/usr/bin/env bash
# Beyond the paper: the smallest fully-connected MetaKAN (B-spline, 784-32-10) on Fashion-MNIST within
# 0.5 accuracy points of the Meta model. Needs `apt-get install dataset-fashion-mnist`. About 20 min on 2 cores.
#   bash examples/smallest_fashion_mnist.sh [workdir]
set -euo pipefail
results=$(cd "$(dirname "$0")" && pwd)/results
work=${1:-runs/smallest-fmnist}
mkdir -p "$work" && cd "$work"
k="kancompress"
# 1. Train the MetaKAN with the paper's hyperparameters (Table 5: 50 epochs max, patience 10, lr_h 5e-4, lr_e 5e-3).
[ -f metakan.safetensors ] || $k train --meta --dataset fashion-mnist -o metakan.safetensors
# 2. Cluster: 4 centroids for the 25,088 first-layer edges, 16 for the 320 second-layer ones; int8 codebooks
#    with one scale per layer; indices rANS-coded; only stage and dataset kept in the metadata.
$k cluster metakan.safetensors -k 16 --layer-k 0=4 --codebook-dtype int8 --index-coding entropy \
    --lean-metadata -o clustered.safetensors --force
# 3. Fine-tune the codebooks (indices frozen), lr 1e-3, at most 10 epochs, early stopping patience 3.
$k finetune clustered.safetensors --lr 1e-3 --epochs 10 --lean-metadata -o smallest.safetensors --force
for f in metakan clustered smallest; do $k eval $f.safetensors; done
$k inspect smallest.safetensors
ls -l smallest.safetensors
# 4. The size-accuracy curve of the same MetaKAN: every layer at each k, int8 codebooks, rANS indices,
#    2 fine-tuning epochs per point (CSV and PNG under examples/results/).
$k sweep metakan.safetensors --ks 2,4,8,16,32,64 --finetune-epochs 2 --codebook-dtype int8 \
    --index-coding entropy -o "$results/sweep-fashion-mnist-metakan.csv" \
    --plot "$results/sweep-fashion-mnist-metakan.png" --force
