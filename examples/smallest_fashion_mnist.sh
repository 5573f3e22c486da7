#!/usr/bin/env bash
# The smallest Fashion-MNIST MetaKAN within 0.5 points, chosen on the validation split, seeds 0 1 2 (about 6 min
# on 2 cores; needs apt-get install dataset-fashion-mnist). Options: see examples/smallest_fashion_mnist.py.
exec "${PYTHON:-python}" "$(dirname "$0")/smallest_fashion_mnist.py" "$@"
