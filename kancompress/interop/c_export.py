"""`export --to c`: a fully-connected model as C99 source: `NAME.h`, `NAME.c` (one entry point
`int NAME_predict(const float *x, float *y)`, no dynamic allocation, `<math.h>` and `<stdint.h>` only) and a
driver `main.c` (float32 rows on stdin -> float32 rows on stdout).

Rendered from the model as arrays (`interop.arrays`). A clustered layer keeps its file's storage: the codebook in
its own precision (float32, float16 or bfloat16 bits, or int8 and a scale) and the indices bit-packed as in the
file (an entropy-coded stream is re-packed to fixed width). It runs in codebook space: each input's k centroid
responses R[i][c] = C[c]·f(x_i) once (the codebook decoded once per call into a scratch buffer), then every output
sums R[i][I(o, i)], reading each index straight from the packed bytes: in·k·|w| + out·in work instead of
out·in·|w|. Dense and meta models store their (generated) vectors. All scratch memory is static (`NAME_RAM_BYTES`),
so `NAME_predict` is not reentrant.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

from kancompress.errors import ConfigError
from kancompress.interop.arrays import Edges, LayerArrays, ModelArrays, Norm

ACTIVATIONS_C: dict[str, str] = {
    "silu": "x / (1.0f + expf(-x))",
    "gelu": "0.5f * x * (1.0f + erff(x * 0.70710678118654752f))",
    "relu": "x > 0.0f ? x : 0.0f",
    "tanh": "tanhf(x)",
    "identity": "x",
    "zero": "0.0f * x",
}

HELPERS: dict[str, str] = {
    "layer_norm": """static void layer_norm(float *v, int n, const float *w, const float *b, float eps)
{
    float mean = 0.0f, var = 0.0f;
    int i;
    for (i = 0; i < n; ++i) mean += v[i];
    mean /= (float)n;
    for (i = 0; i < n; ++i) var += (v[i] - mean) * (v[i] - mean);
    var /= (float)n;
    for (i = 0; i < n; ++i) v[i] = (v[i] - mean) / sqrtf(var + eps) * w[i] + b[i];
}""",
    "index_at": """static uint32_t index_at(const uint8_t *packed, uint32_t n, uint32_t bits)
{
    const uint32_t bit = n * bits, byte = bit >> 3;
    const uint32_t word = (uint32_t)packed[byte] | ((uint32_t)packed[byte + 1] << 8) | ((uint32_t)packed[byte + 2] << 16);
    return (word >> (bit & 7u)) & ((1u << bits) - 1u);
}""",
    "half_to_float": """static float half_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    union { uint32_t u; float f; } out;
    if (exponent == 0u) {
        out.f = (float)mantissa * 5.9604644775390625e-8f;  /* subnormal: mantissa / 2^24 */
        out.u |= sign;
    } else if (exponent == 31u) {
        out.u = sign | 0x7f800000u | (mantissa << 13);
    } else {
        out.u = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    return out.f;
}""",
    "bf16_to_float": """static float bf16_to_float(uint16_t h)
{
    union { uint32_t u; float f; } out;
    out.u = (uint32_t)h << 16;
    return out.f;
}""",
    "meyer": """static float meyer(float z)
{
    const float v = fabsf(z), s = 2.0f * v - 1.0f;
    const float nu = s * s * s * s * (35.0f - 84.0f * s + 70.0f * s * s - 20.0f * s * s * s);
    const float aux = v <= 0.5f ? 1.0f : (v >= 1.0f ? 0.0f : cosf(1.57079632679489662f * nu));
    return sinf(3.14159265358979324f * v) * aux;
}""",
}


@dataclass(frozen=True)
class CExport:
    """The generated files (name -> text) and what they need: flash bytes of the constant data, RAM of the
    scratch buffers."""

    files: dict[str, str]
    data_bytes: int
    ram_bytes: int
    notes: list[str]


def c_name(text: str) -> str:
    """A C identifier from a file or folder name."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", text).strip("_").lower() or "kan"
    return f"kan_{name}" if name[0].isdigit() else name


def _float(value: float) -> str:
    value = float(np.float32(value))
    if not np.isfinite(value):
        raise ConfigError(f"the model holds a non-finite number ({value}); it cannot be exported to C")
    text = f"{value:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def _array(ctype: str, name: str, values: np.ndarray, per_line: int = 8) -> str:
    flat = values.reshape(-1)
    if ctype == "float":
        items = [_float(v) for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)] or ["0"]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{max(len(items), 1)}] = {{\n    {body}\n}};"


def _edge_decode(layer: "_Layer", edges: Edges) -> str:
    """C that decodes a clustered layer's codebook, stored in its own precision, into the scratch `cb` (k·|w|
    floats, transposed)."""
    assert edges.codebook is not None
    k, width = edges.codebook.shape
    # transposed on decoding, cb[j·k + c] = C[c][j]: the response loop then runs over k contiguous centroids
    loop = f"    for (int c = 0; c < {k}; ++c)\n        for (int j = 0; j < {width}; ++j) cb[j * {k} + c] = "
    if edges.codebook_dtype == "int8":
        stored = layer.constant("cb", edges.codebook, "int8_t")
        scale = layer.constant("cb_scale", np.array([edges.scale], dtype=np.float32))
        return loop + f"(float){stored}[c * {width} + j] * {scale}[0];\n"
    if edges.codebook_dtype in ("float16", "bfloat16"):
        helper = "half_to_float" if edges.codebook_dtype == "float16" else "bf16_to_float"
        layer.helpers.add(helper)
        stored = layer.constant("cb", edges.codebook, "uint16_t")
        return loop + f"{helper}({stored}[c * {width} + j]);\n"
    stored = layer.constant("cb", edges.codebook)
    return loop + f"{stored}[c * {width} + j];\n"


class _Layer:
    """One layer's C: its constant arrays and its forward function `static void {p}(float *x, float *y)` (x: the
    layer input, changed in place by a pre-norm; y: its outputs)."""

    def __init__(self, layer: LayerArrays, index: int, prefix: str):
        self.layer, self.p = layer, f"{prefix}_l{index}"
        self.width = layer.num_basis + 1
        self.arrays: list[str] = []
        self.data_bytes = 0
        self.helpers: set[str] = set()

    def constant(self, suffix: str, values: np.ndarray, ctype: str = "float") -> str:
        name = f"{self.p}_{suffix}"
        self.arrays.append(_array(ctype, name, values))
        self.data_bytes += values.size * {"float": 4, "int8_t": 1, "uint8_t": 1, "uint16_t": 2}[ctype]
        return name

    def norm(self, suffix: str, norm: Norm | None, vector: str, size: int, then_silu: bool = False) -> str:
        if norm is None:
            return ""
        weight, bias = self.constant(suffix + "_w", norm.weight), self.constant(suffix + "_b", norm.bias)
        if norm.affine_only:
            code = f"    for (int i = 0; i < {size}; ++i) {vector}[i] = {vector}[i] * {weight}[i] + {bias}[i];\n"
        else:
            self.helpers.add("layer_norm")
            code = f"    layer_norm({vector}, {size}, {weight}, {bias}, {_float(norm.eps)});\n"
        if then_silu:
            code += f"    for (int i = 0; i < {size}; ++i) {vector}[i] = {vector}[i] / (1.0f + expf(-{vector}[i]));\n"
        return code

    def render(self, act: str) -> tuple[str, int, int]:
        """(C text, scratch floats for features or responses, scratch floats for a decoded codebook)."""
        layer, p = self.layer, self.p
        n, out, nb, w = layer.in_features, layer.out_features, layer.num_basis, self.width
        template = layer.c_source
        if template is None:
            raise ConfigError(f"the {layer.spec.model} basis has no C export yet")
        names = {name: self.constant(name, values) for name, values in layer.constants.items()}
        fill = {**names, "nb": str(nb), "n": str(n)}
        prepare = string.Template(template.prepare).substitute(fill) if template.prepare else ""
        features = string.Template(template.features).substitute(fill) if template.features else ""
        edge = string.Template(template.edge).substitute(fill) if template.edge else ""
        for helper in HELPERS:
            if re.search(rf"\b{helper}\(", prepare + features + edge):
                self.helpers.add(helper)
        body = self.norm("pre", layer.pre_norm, "x", n)
        body += f"    for (int i = 0; i < {n}; ++i) t[i] = x[i];\n"
        body += self.norm("bn_in", layer.basis_norm, "t", n)
        if prepare:
            body += "    {\n        int i;\n" + _indent(prepare, 2) + "\n    }\n"
        edges = layer.edges
        scratch, codebook = 0, 0
        if edges.codebook is not None:
            assert edges.packed is not None
            packed = self.constant("idx", np.concatenate([edges.packed, np.zeros(2, dtype=np.uint8)]), "uint8_t")
            body += _edge_decode(self, edges)
            k, codebook, scratch = edges.k, edges.codebook.size, n * edges.k
            if edge:  # parametric: each centroid's own function
                body += (f"    for (int i = 0; i < {n}; ++i) {{\n        const float u = t[i], a = {act}(x[i]);\n"
                         f"        for (int c = 0; c < {k}; ++c) {{\n            float q[{w}];\n"
                         f"            for (int j = 0; j < {w}; ++j) q[j] = cb[j * {k} + c];\n"
                         f"            float v;\n{_indent(edge, 3)}\n            r[i * {k} + c] = v + q[{nb}] * a;\n"
                         "        }\n    }\n")
            else:  # R[i][c] = Σ_j C[c][j]·f_j over the basis functions that are not 0, plus the base branch
                body += (f"    for (int i = 0; i < {n}; ++i) {{\n        float f[{w}];\n        int lo = 0, hi = {nb};\n"
                         f"        const float u = t[i];\n{_indent(features, 2)}\n"
                         f"        const float a = {act}(x[i]);\n        float *ri = r + i * {k};\n"
                         f"        for (int c = 0; c < {k}; ++c) ri[c] = a * cb[{nb * k} + c];\n"
                         f"        for (int j = lo; j < hi; ++j) {{\n            const float fj = f[j];\n"
                         f"            const float *row = cb + j * {k};\n"
                         f"            for (int c = 0; c < {k}; ++c) ri[c] += fj * row[c];\n        }}\n    }}\n")
            def term(offset: str) -> str:
                return f"r[(i + {offset}) * {k} + {_index_expression(self, packed, f'base + i + {offset}', edges.bits)}]"

            # four partial sums: a single running sum would wait on each addition's latency
            body += (f"    for (int o = 0; o < {out}; ++o) {{\n        const int base = o * {n};\n"
                     "        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;\n        int i = 0;\n"
                     f"        for (; i + 4 <= {n}; i += 4) {{\n            a0 += {term('0')};\n"
                     f"            a1 += {term('1')};\n            a2 += {term('2')};\n            a3 += {term('3')};\n"
                     f"        }}\n        for (; i < {n}; ++i) a0 += {term('0')};\n"
                     "        y[o] = (a0 + a1) + (a2 + a3);\n    }\n")
        else:
            assert edges.dense is not None
            weights = self.constant("w", edges.dense)
            if edge:
                body += (f"    for (int o = 0; o < {out}; ++o) {{\n        float acc = 0.0f;\n"
                         f"        for (int i = 0; i < {n}; ++i) {{\n            const float *q = {weights} + (o * {n} + i) * {w};\n"
                         f"            const float u = t[i];\n            float v;\n{_indent(edge, 3)}\n"
                         f"            acc += v + q[{nb}] * {act}(x[i]);\n        }}\n        y[o] = acc;\n    }}\n")
            else:
                scratch = n * w
                body += (f"    for (int i = 0; i < {n}; ++i) {{\n        float *f = r + i * {w};\n        int lo = 0, hi = {nb};\n"
                         f"        const float u = t[i];\n        for (int j = 0; j < {nb}; ++j) f[j] = 0.0f;\n"
                         f"{_indent(features, 2)}\n        (void)lo;\n        (void)hi;\n        f[{nb}] = {act}(x[i]);\n    }}\n"
                         f"    for (int o = 0; o < {out}; ++o) {{\n        const float *wv = {weights} + o * {n * w};\n"
                         "        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;\n        int j = 0;\n"
                         f"        for (; j + 4 <= {n * w}; j += 4) {{\n            a0 += wv[j] * r[j];\n"
                         "            a1 += wv[j + 1] * r[j + 1];\n            a2 += wv[j + 2] * r[j + 2];\n"
                         "            a3 += wv[j + 3] * r[j + 3];\n        }\n"
                         f"        for (; j < {n * w}; ++j) a0 += wv[j] * r[j];\n"
                         "        y[o] = (a0 + a1) + (a2 + a3);\n    }\n")
        body += self._finish()
        text = "\n".join(self.arrays) + f"\n\nstatic void {p}(float *x, float *y)\n{{\n{body}}}\n"
        return text, scratch, codebook

    def _finish(self) -> str:
        layer = self.layer
        code = ""
        if layer.bias is not None:
            bias = self.constant("bias", layer.bias)
            code += f"    for (int o = 0; o < {layer.out_features}; ++o) y[o] += {bias}[o];\n"
        if layer.mult_nodes:  # node j after the sum nodes: the product of `arity` consecutive sub-nodes
            sums, arity = layer.nodes - layer.mult_nodes, layer.mult_arity
            scale, shift = (self.constant("node_scale", layer.node_scale),  # type: ignore[arg-type]
                            self.constant("node_bias", layer.node_bias))  # type: ignore[arg-type]
            code += (f"    for (int j = 0; j < {layer.mult_nodes}; ++j) {{\n        float prod = 1.0f;\n"
                     f"        for (int a = 0; a < {arity}; ++a) prod *= y[{sums} + j * {arity} + a];\n"
                     f"        y[{sums} + j] = prod;\n    }}\n"
                     f"    for (int o = 0; o < {layer.nodes}; ++o) y[o] = y[o] * {scale}[o] + {shift}[o];\n")
        code += self.norm("out", layer.output_norm, "y", layer.nodes, then_silu=True)
        code += self.norm("bn_out", layer.output_bn, "y", layer.nodes)
        code += self.norm("final", layer.final_norm, "y", layer.nodes)
        return code


def _index_expression(layer: _Layer, packed: str, edge: str, bits: int) -> str:
    """C reading index number `edge` from the packed bytes: one shift and mask where `bits` divides a byte."""
    if bits == 8:
        return f"(int){packed}[{edge}]"
    if 8 % bits == 0:
        per = 8 // bits
        return f"(int)(({packed}[(unsigned)({edge}) / {per}u] >> (((unsigned)({edge}) % {per}u) * {bits}u)) & {(1 << bits) - 1}u)"
    layer.helpers.add("index_at")
    return f"(int)index_at({packed}, (uint32_t)({edge}), {bits}u)"


def _indent(code: str, level: int) -> str:
    return "\n".join(("    " * level + line) if line.strip() else line for line in code.strip("\n").splitlines())


def render_c(arrays: ModelArrays, name: str) -> CExport:
    """The C files of a model: `{name}.h`, `{name}.c` and `main.c`."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"{name!r} is not a C identifier; choose a name of letters, digits and _")
    upper = name.upper()
    act = f"{name}_act"
    layers = [_Layer(layer, index, name) for index, layer in enumerate(arrays.layers)]
    texts, scratch, codebook = [], 0, 0
    for layer in layers:
        text, used, cb = layer.render(act)
        texts.append(text)
        scratch, codebook = max(scratch, used), max(codebook, cb)
    vector = max([arrays.inputs] + [max(l.in_features, l.out_features) for l in arrays.layers])
    prepared = max(l.in_features for l in arrays.layers)
    ram_floats = 2 * vector + prepared + scratch + codebook
    helpers = sorted(set().union(*(layer.helpers for layer in layers)))
    data_bytes = sum(layer.data_bytes for layer in layers)
    transform = []
    for suffix, values in (("in_scale", arrays.input_scale), ("in_shift", arrays.input_shift),
                           ("out_scale", arrays.target_scale), ("out_shift", arrays.target_shift)):
        if values is not None:
            transform.append(_array("float", f"{name}_{suffix}", values))
            data_bytes += values.size * 4
    activation = arrays.layers[0].activation
    head = f"""/* {name}.c: a Kolmogorov-Arnold Network exported by kancompress (C99; no dynamic allocation). */
#include <math.h>
#include <stdint.h>
#include "{name}.h"

static float va[{vector}], vb[{vector}];  /* layer inputs and outputs */
static float t[{prepared}];  /* the inputs as the basis sees them */
{f"static float r[{scratch}];  /* basis features (dense layers) or centroid responses (clustered layers) */" + chr(10) if scratch else ""}{f"static float cb[{codebook}];  /* a clustered layer's codebook, decoded once per call */" + chr(10) if codebook else ""}
static float {act}(float x)
{{
    return {ACTIVATIONS_C[activation]};
}}
"""
    parts = [head] + [HELPERS[helper] for helper in helpers] + transform + texts
    scale_in = f" * {name}_in_scale[i] + {name}_in_shift[i]" if arrays.input_scale is not None else ""
    scale_out = f" * {name}_out_scale[o] + {name}_out_shift[o]" if arrays.target_scale is not None else ""
    calls, current, other = [], "va", "vb"
    for layer in layers:
        calls.append(f"    {layer.p}({current}, {other});")
        current, other = other, current
    parts.append(f"""int {name}_predict(const float *x, float *y)
{{
    for (int i = 0; i < {arrays.inputs}; ++i) {{
        if (!isfinite(x[i])) return 1;
        va[i] = x[i]{scale_in};
    }}
{chr(10).join(calls)}
    for (int o = 0; o < {arrays.outputs}; ++o) y[o] = {current}[o]{scale_out};
    return 0;
}}
""")
    source = "\n".join(parts)
    recoded = sorted({l.edges.recoded_from for l in arrays.layers if l.edges.recoded_from})
    notes = [f"{', '.join(recoded)}-coded index streams are stored bit-packed in C (fixed width; a C entropy decoder "
             "is not part of the export)"] if recoded else []
    header = f"""/* {name}.h: a Kolmogorov-Arnold Network exported by kancompress ({arrays.task}). */
#ifndef {upper}_H
#define {upper}_H

#define {upper}_INPUTS {arrays.inputs}
#define {upper}_OUTPUTS {arrays.outputs}
#define {upper}_DATA_BYTES {data_bytes}  /* constant data: codebooks, packed indices, vectors, norms */
#define {upper}_RAM_BYTES {4 * ram_floats}  /* static scratch buffers (not reentrant) */

/* One sample: x has {upper}_INPUTS floats (raw inputs: the stored data transform is applied inside), y receives
   {upper}_OUTPUTS floats ({'logits' if arrays.task == 'classification' else 'outputs in the data units'}).
   Returns 0, or 1 when an input is not finite (y is then unchanged). */
int {name}_predict(const float *x, float *y);

#endif
"""
    driver = f"""/* main.c: float32 rows of {upper}_INPUTS values on stdin -> float32 rows of {upper}_OUTPUTS values on stdout. */
#include <stdio.h>
#include "{name}.h"

int main(void)
{{
    float x[{upper}_INPUTS], y[{upper}_OUTPUTS];
    while (fread(x, sizeof(float), {upper}_INPUTS, stdin) == {upper}_INPUTS) {{
        if ({name}_predict(x, y) != 0) {{
            fputs("{name}: an input is not a finite number\\n", stderr);
            return 1;
        }}
        if (fwrite(y, sizeof(float), {upper}_OUTPUTS, stdout) != {upper}_OUTPUTS) return 1;
    }}
    return 0;
}}
"""
    return CExport({f"{name}.h": header, f"{name}.c": source, "main.c": driver}, data_bytes, 4 * ram_floats, notes)
