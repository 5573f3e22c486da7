"""Why MetaGramKANConv loses accuracy in its codebook fine-tune on Fashion-MNIST (examples/table2_fashion_mnist.py):
fine-tune the clustered model at a learning rate of 1e-12 (weights stay put; only the train-mode passes act —
BatchNorm statistics re-estimated, dropout) and at the paper's lr_c, and print the validation accuracy of each.

    python examples/finetune_train_mode_probe.py --device cuda             # about 1.5 min on one H200
    python examples/finetune_train_mode_probe.py --model kan --device cuda

The meta model is trained as in table2_fashion_mnist.py (all training images, at most --epochs epochs, seed 0),
then clustered at k = 256 (float32 codebooks). Prints only; nothing is written.
"""

from __future__ import annotations

import argparse

from table2_fashion_mnist import accuracy  # examples/ is on sys.path when a script there runs

from kancompress import api
from kancompress.config import TrainConfig
from kancompress.data import split_validation
from kancompress.options import ClusterConfig, FinetuneOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gramkan")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    data = api.load_data("fashion-mnist", data_dir=args.data_dir)
    options = api.TrainOptions.build(model=args.model, meta=True, conv=True, dataset="fashion-mnist",
                                     train=TrainConfig(epochs=args.epochs, patience=0), device=args.device)
    source = api.train(options, data).model
    val = split_validation(data, seed=0)
    print(f"Meta{args.model} conv, validation accuracy: {accuracy(source, val.val_x, val.val_y, args.device):.2f} %")
    clustered, _ = api.cluster(source, ClusterConfig(k=256, device=args.device))
    print(f"clustered, k = 256: {accuracy(clustered, val.val_x, val.val_y, args.device):.2f} %")
    for lr in (1e-12, None):
        tune = FinetuneOptions(lr=lr, train=TrainConfig(epochs=args.finetune_epochs, patience=0), device=args.device)
        result = api.finetune(clustered, tune, data)
        epochs = ", ".join(f"{100 * (e.val.accuracy or 0):.2f}" for e in result.history.epochs)
        print(f"fine-tuned at lr {lr if lr is not None else 'lr_c (paper)'}: validation after each epoch {epochs} %")


if __name__ == "__main__":
    main()
