"""ONNX export of any checkpoint, compressed checkpoints staying compressed in the graph.

A clustered model's graph holds, per layer, its (k, |w|) codebook and its bit-packed index bytes as initializers;
the graph unpacks the indices (BitShift, BitwiseAnd: for 1, 2, 4 or 8 bits per index; other widths are stored one
byte per index) and forms the edge vectors with a Gather, so the .onnx file is about as small as the packed
checkpoint. Dense and meta models export their (generated) vectors. The stored data transform is part of the
graph, so it takes raw inputs and returns logits or regression outputs. Dynamic batch axis (and image size for
conv models); opset 18. Needs the `onnx` extra (`pip install "kancompress[onnx]"`).
"""

from __future__ import annotations

import copy
import io

import torch
from torch import nn

from kancompress.edges import CodebookEdges, EdgeStore
from kancompress.errors import ConfigError
from kancompress.format.bits import index_bits
from kancompress.models import KANModel, with_edges

OPSET = 18
PACKABLE_BITS = (1, 2, 4, 8)  # index widths the graph unpacks from whole bytes


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError('ONNX export needs the onnx extra: pip install "kancompress[onnx]"') from None


class PackedCodebookEdges(EdgeStore):
    """A clustered model's edges as the exported graph computes them: unpack indices, then gather centroids."""

    kind = "clustered"

    def __init__(self, edges: CodebookEdges):
        super().__init__()
        self.codebooks = nn.ParameterList()
        self.widths: list[int] = []
        self.counts: list[int] = []
        for layer, book in enumerate(edges.books()):
            bits = index_bits(book.k)
            width = next((b for b in PACKABLE_BITS if b >= bits), 16)
            indices = book.indices.to(torch.int64)
            if width <= 8:
                per_byte = 8 // width
                padded = torch.zeros(-(-indices.numel() // per_byte) * per_byte, dtype=torch.int64)
                padded[: indices.numel()] = indices
                shifts = torch.arange(per_byte, dtype=torch.int64) * width  # index j of a byte at bits j·width
                packed = (padded.view(-1, per_byte) << shifts).sum(dim=1).to(torch.uint8)  # (bytes,)
            else:
                packed = indices.to(torch.int16)  # k > 256: two bytes per index
            self.register_buffer(f"packed_{layer}", packed)
            self.codebooks.append(nn.Parameter(book.codebook.detach().clone(), requires_grad=False))
            self.widths.append(width)
            self.counts.append(indices.numel())

    def num_layers(self) -> int:
        return len(self.codebooks)

    def forward(self, layer: int) -> torch.Tensor:
        packed: torch.Tensor = getattr(self, f"packed_{layer}")
        width, n = self.widths[layer], self.counts[layer]
        if width <= 8:
            shifts = torch.arange(0, 8, width, dtype=torch.uint8, device=packed.device)  # (per_byte,)
            mask = torch.tensor((1 << width) - 1, dtype=torch.uint8, device=packed.device)
            unpacked = torch.bitwise_and(torch.bitwise_right_shift(packed.unsqueeze(-1), shifts), mask)
            indices = unpacked.reshape(-1)[:n].to(torch.int64)  # (n,)
        else:
            indices = packed.to(torch.int64)
        return torch.index_select(self.codebooks[layer], 0, indices)  # (n, |w|): a Gather in the graph


def export_onnx(model: KANModel, image_size: int = 32) -> bytes:
    """The .onnx bytes of `model` (see the module doc). Conv models are traced on `image_size`² images; the exported
    graph takes any size."""
    require_onnx()
    model = copy.deepcopy(model).cpu().eval()
    if isinstance(model.edges, CodebookEdges):
        model = with_edges(model, PackedCodebookEdges(model.edges))
    model.eval()
    config = model.config
    if config.conv is not None:
        example = torch.zeros(1, config.widths[0], image_size, image_size)
        axes = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch"}}
    else:
        example = torch.zeros(1, config.widths[0])
        axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (example,), buffer,  # type: ignore[arg-type]  # a file object works, as documented
                          dynamo=False, opset_version=OPSET, input_names=["input"], output_names=["output"],
                          dynamic_axes=axes, do_constant_folding=False)
    return _compact(buffer.getvalue(), config.task)


def _compact(data: bytes, task: str) -> bytes:
    """Short names for the graph's nodes and intermediate values (the exporter's source-path names took ~70 % of
    a small clustered model's file), documentation strings dropped; the graph itself is unchanged."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    keep = {value.name for value in (*graph.input, *graph.output)} | {init.name for init in graph.initializer}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for number, node in enumerate(graph.node):
        node.name, node.doc_string = f"n{number}", ""
        for position, name in enumerate(node.input):
            node.input[position] = short(name)
        for position, name in enumerate(node.output):
            node.output[position] = short(name)
    del graph.value_info[:]
    model.doc_string = ""
    entry = model.metadata_props.add()  # so `kancompress predict` knows what the outputs are
    entry.key, entry.value = "kancompress_task", task
    serialized: bytes = model.SerializeToString()
    return serialized
