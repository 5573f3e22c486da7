#!/usr/bin/env bash
# Regenerate the published results under examples/results/ with the code at hand.
#   bash examples/reproduce.sh --quick     # digits Table 1 layout, all five bases (about 6 minutes on 2 cores)
#   bash examples/reproduce.sh             # everything under examples/results/ (about 3.5 hours on 2 cores; the
#                                          # conv Fashion-MNIST table only where CUDA is: 10 min on one H200)
# Results are written into runs/reproduce and, with --write-results, into examples/results/ too.
# The full run needs the dev extra (pykan, matplotlib) and Fashion-MNIST (apt-get install dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0; write=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --write-results) write=(--write-results) ;;
    *) echo "usage: bash examples/reproduce.sh [--quick] [--write-results]" >&2; exit 2 ;;
  esac
done
# The project's own environment: .venv (the README's install), else $PYTHON; never a bare system python that
# imports kancompress from the checkout without torch.
if [ -n "${PYTHON:-}" ]; then py=$PYTHON; elif [ -x .venv/bin/python ]; then py=.venv/bin/python; else
  echo "no .venv here: install first (the README's command), or set PYTHON to an interpreter that has it" >&2; exit 1
fi
"$py" -c "import torch, kancompress" 2>/dev/null || {
  echo "$py cannot import torch and kancompress: install first: $py -m pip install -e '.[dev]'" >&2; exit 1; }
"$py" examples/reproduce_table1.py --dataset digits "${write[@]}"
[ "$quick" = 1 ] && exit 0
"$py" -c "import kan, matplotlib" 2>/dev/null || { echo "the full run needs: pip install -e '.[dev]'" >&2; exit 1; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "the full run needs: apt-get install dataset-fashion-mnist" >&2; exit 1; }
wflag=(); [ ${#write[@]} -gt 0 ] && wflag=(--write)
"$py" examples/feynman_table.py "${wflag[@]}"
"$py" examples/round_trips.py --workdir runs/round-trips "${wflag[@]}"
"$py" examples/bench_cli.py "${wflag[@]}"
"$py" examples/bench_deploy.py "${wflag[@]}"
"$py" examples/bench_speed.py "${write[@]}"
"$py" examples/meta_sharing.py "${wflag[@]}"
"$py" examples/ablation_embedding.py --dataset digits "${write[@]}"
"$py" examples/reproduce_table1.py --conv --dataset digits --epochs 15 --patience 5 --batch-size 32 "${write[@]}"
"$py" examples/smallest_fashion_mnist.py --workdir runs/smallest-fmnist "${write[@]}"
"$py" examples/compress_frontier.py --out runs/frontier "${write[@]}"
"$py" examples/figure2_sweep.py --dataset fashion-mnist --model fastkan --epochs 15 --patience 5 --finetune-epochs 2 "${write[@]}"
"$py" examples/reproduce_table1.py --dataset fashion-mnist --epochs 15 --patience 5 "${write[@]}"
"$py" examples/meta_gram_rates.py "${write[@]}"
if "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  "$py" examples/table2_fashion_mnist.py --device cuda --epochs 10 --finetune-epochs 2 "${write[@]}"
else
  echo "no CUDA device: skipping examples/table2_fashion_mnist.py (about 10 hours on 2 CPU cores)" >&2
fi
