"""ONNX export of any checkpoint, compressed checkpoints staying compressed in the graph.

A clustered model's graph holds, per layer, its (k, |w|) codebook and the checkpoint's own bit-packed index bytes
(any width, `format.bits`) as initializers; a few operators unpack the indices and gather the edge vectors. Those
operators read initializers only, so onnxruntime folds them into constants when a session loads: the file stays
about as small as the packed checkpoint while inference runs the decoded product. Dense and meta models export
their (generated) vectors. Uniform B-spline grids are evaluated in closed form (`bases.bspline.cardinal_bsplines`:
about ten element-wise operators, no search or scatter), stored grids by the full Cox–de Boor recursion. After
tracing, the small constant chains the exporter leaves around slices and shapes are folded and shared, so a
fully-connected graph has a few dozen operators. The stored data transform is part of the graph, so it takes raw
inputs and returns logits or regression outputs. Dynamic batch axis (and image size for conv models); opset 18.
Needs the `onnx` extra (`pip install "kancompress[onnx]"`).
"""

from __future__ import annotations

import copy
import io
from typing import TYPE_CHECKING

import numpy as np

import torch
from torch import nn

from kancompress.edges import CodebookEdges, EdgeStore
from kancompress.errors import ConfigError
from kancompress.format.bits import index_bits, pack_bits
from kancompress.models import KANModel, with_edges

if TYPE_CHECKING:
    import onnx

OPSET = 18


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError('ONNX export needs the onnx extra: pip install "kancompress[onnx]"') from None


class PackedCodebookEdges(EdgeStore):
    """A clustered model's edges as the exported graph computes them: unpack the indices from the checkpoint's
    own bit-packed bytes (`format.bits.pack_bits`), then gather centroids. Both steps read initializers only, so
    onnxruntime folds them into a constant when the session loads: the file stays compressed, inference runs on
    decoded vectors."""

    kind = "clustered"

    def __init__(self, edges: CodebookEdges):
        super().__init__()
        self.codebooks = nn.ParameterList()
        self.bits: list[int] = []
        self.counts: list[int] = []
        for layer, book in enumerate(edges.books()):
            bits = index_bits(book.k)
            self.register_buffer(f"packed_{layer}", pack_bits(book.indices, bits))  # (ceil(n·bits/8),) uint8
            self.codebooks.append(nn.Parameter(book.codebook.detach().float().clone(), requires_grad=False))
            self.bits.append(bits)
            self.counts.append(book.indices.numel())

    def num_layers(self) -> int:
        return len(self.codebooks)

    def forward(self, layer: int) -> torch.Tensor:
        packed: torch.Tensor = getattr(self, f"packed_{layer}")
        bits, n = self.bits[layer], self.counts[layer]
        positions = torch.arange(8, dtype=torch.uint8)  # bit p of a byte is stream bit 8·byte + p
        stream = torch.bitwise_and(torch.bitwise_right_shift(packed.unsqueeze(-1), positions), 1)  # (bytes, 8)
        stream = stream.reshape(-1)  # (8·bytes,)
        if n * bits % 8:  # the last byte's padding bits
            stream = stream[: n * bits]
        digits = stream.reshape(n, bits).to(torch.int64)  # (n, bits), least significant first
        indices = (digits * (1 << torch.arange(bits, dtype=torch.int64))).sum(dim=1)  # (n,)
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
    _fold_small_constants(graph)
    keep = {value.name for value in (*graph.input, *graph.output)} | {init.name for init in graph.initializer}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for node in graph.node:
        node.name, node.doc_string = "", ""  # node names are optional
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


def _fold_small_constants(graph: onnx.GraphProto, limit: int = 256) -> None:
    """Replace every node computed from `Constant` nodes alone (the exporter's Unsqueeze/Cast/Concat chains around
    slices and shapes) by one `Constant` of at most `limit` elements, then drop the constants nothing reads.
    Initializers are never folded, so the codebooks and packed indices stay as stored."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    known: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.input and all(name in known for name in node.input) and len(node.output) == 1:
            single = onnx.helper.make_graph(
                [node], "fold", [], [onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.UNDEFINED,
                                                                        None)],
                [numpy_helper.from_array(known[name], name) for name in set(node.input)])
            (value,) = ReferenceEvaluator(onnx.helper.make_model(single, opset_imports=[
                onnx.helper.make_opsetid("", OPSET)])).run(None, {})
            if np.asarray(value).size <= limit:
                known[node.output[0]] = np.asarray(value)
                node = onnx.helper.make_node("Constant", [], [node.output[0]],
                                             value=numpy_helper.from_array(np.asarray(value)))
        nodes.append(node)
    # One Constant per distinct value: the exporter repeats the same small tensors (axes, shapes) many times.
    first: dict[tuple[str, tuple[int, ...], bytes], str] = {}
    alias: dict[str, str] = {}
    for node in nodes:
        if node.op_type == "Constant" and node.output[0] in known:
            value = known[node.output[0]]
            key = (value.dtype.str, value.shape, value.tobytes())
            alias[node.output[0]] = first.setdefault(key, node.output[0])
    for node in nodes:
        for position, name in enumerate(node.input):
            node.input[position] = alias.get(name, name)
    used = {name for node in nodes for name in node.input} | {value.name for value in graph.output}
    del graph.node[:]
    graph.node.extend(node for node in nodes if node.op_type != "Constant" or node.output[0] in used)
