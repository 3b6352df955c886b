"""Inference kernels for linear layers, swapped into a plain model after it is built.

Models are defined with `nn.Linear` only. `optimize_linears(module, precision)` replaces each
`nn.Linear` of a module tree by an `OptimizedLinear` that keeps the same `weight` and `bias`
parameters (same state_dict, training unaffected: with autograd it is `F.linear`) and computes
inference products with one kernel. `restore_linears` swaps the plain layers back.

Why: autoregressive decoding multiplies 1 to 8 rows (batch x CFG) by every weight at each step,
so it runs at the speed the weights stream from memory, and which kernel streams fastest depends
on the CPU (measured: oneDNN's float32 inner product 4x faster than `F.linear` on an AVX-512
EPYC, 1.4x on an AVX2 machine, where FBGEMM's packed float16 is 3x faster still). So the choice
is measured per model, on its own weights (`choose_kernel`), among the kernels that are *exact*
for those weights:

- 'f_linear': `F.linear` (float32).
- 'onednn': oneDNN's float32 inner product (`torch.ops.mkldnn._linear_pointwise`).
- 'fp16': FBGEMM, weights packed in float16, activations and accumulation in float32. Exact up
  to summation order when every weight is float16-representable, as in the released
  checkpoints (stored in float16, loaded in float32): then it reads half the bytes.

Reduced precision is opt-in only: 'bf16' (bfloat16 weights and activations, oneDNN) and 'int8'
(dynamic quantization, per-channel int8 weights). Everything is held by the layers themselves:
there is no process-wide state; the compile-safe oneDNN op is registered only when compiling.
"""
import logging
import time
import typing as tp

import torch
from torch import nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

EXACT_KERNELS = ('onednn', 'f_linear', 'fp16')
KERNELS = EXACT_KERNELS + ('bf16', 'int8')
PRECISIONS = ('auto', 'fp32', 'fp16', 'bf16', 'int8')
_OP_NAME = 'audiocraft::onednn_linear'


def onednn_available() -> bool:
    """Whether this PyTorch build runs oneDNN's linear op (a capability probe, a few microseconds)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        torch.ops.mkldnn._linear_pointwise(torch.zeros(1, 4), torch.zeros(2, 4), None, 'none', [], '')
        return True
    except Exception:
        return False


def fbgemm_available() -> bool:
    """Whether FBGEMM's packed float16 / int8 linear ops are available (x86 builds)."""
    try:
        packed = torch.ops.quantized.linear_prepack_fp16(torch.zeros(2, 4), None)
        torch.ops.quantized.linear_dynamic_fp16(torch.zeros(1, 4), packed)
        return True
    except Exception:
        return False


def register_compile_op() -> None:
    """Register `audiocraft::onednn_linear`, the oneDNN product as one opaque op that torch.compile
    keeps (inductor's own GEMM is ~3x slower for a few rows). Called when compiling, not at import."""
    namespace = getattr(torch.ops, 'audiocraft', None)
    if namespace is not None and hasattr(namespace, 'onednn_linear'):
        return
    torch.library.define(_OP_NAME, "(Tensor x, Tensor weight, Tensor? bias) -> Tensor")

    @torch.library.impl(_OP_NAME, 'cpu')
    def _impl(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, 'none', [], '')

    @torch.library.register_fake(_OP_NAME)
    def _fake(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        return x.new_empty(*x.shape[:-1], weight.shape[0])


def _weight_key(weight: torch.Tensor) -> tp.Tuple[int, int, tp.Tuple[int, ...], int]:
    return (weight.data_ptr(), weight.storage_offset(), tuple(weight.shape), weight._version)


class OptimizedLinear(nn.Module):
    """An `nn.Linear` (same parameters, same state_dict) computing inference products with `kernel`.

    Packed copies (fp16, bf16, int8) are made from the parameters and rebuilt if the parameters
    change (in place or replaced). With autograd, or off CPU, it is plain `F.linear`.
    """

    def __init__(self, linear: nn.Linear, kernel: str):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"Unknown linear kernel {kernel!r}, expected one of {KERNELS}.")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.kernel = kernel
        self.compile_op = False  # set by optimize_linears(compile=True)
        self._packed: tp.Any = None
        self._packed_from: tp.Any = None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}"

    def to_linear(self) -> nn.Linear:
        """The plain `nn.Linear` holding the same parameters."""
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device='meta')
        plain.weight = self.weight
        plain.bias = self.bias
        return plain

    def _pack(self) -> tp.Any:
        key = (_weight_key(self.weight), None if self.bias is None else _weight_key(self.bias))
        if self._packed is not None and self._packed_from == key:
            return self._packed
        with torch.no_grad():
            w = self.weight.detach().float().contiguous()
            b = None if self.bias is None else self.bias.detach().float().contiguous()
            if self.kernel == 'fp16':
                packed: tp.Any = torch.ops.quantized.linear_prepack_fp16(w, b)
            elif self.kernel == 'int8':
                scales = (w.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
                zero_points = torch.zeros(w.shape[0], dtype=torch.long)
                qweight = torch.quantize_per_channel(w, scales, zero_points, axis=0, dtype=torch.qint8)
                packed = torch.ops.quantized.linear_prepack(qweight, b)
            else:  # bf16
                packed = (w.bfloat16(), None if b is None else b.bfloat16())
        self._packed, self._packed_from = packed, key
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        plain = (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)) \
            or x.device.type != 'cpu' or x.numel() == 0 or torch.is_autocast_enabled('cpu')
        if plain or self.kernel == 'f_linear':
            return F.linear(x, weight, bias)
        if self.kernel == 'onednn':
            if x.dtype != torch.float32 or weight.dtype != torch.float32 or x.dim() < 2:
                return F.linear(x, weight, bias)
            if torch.compiler.is_compiling():
                if self.compile_op:
                    return torch.ops.audiocraft.onednn_linear(x, weight, bias)
                return F.linear(x, weight, bias)
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, 'none', [], '')
        if torch.compiler.is_compiling():
            raise RuntimeError(f"The packed '{self.kernel}' kernel does not combine with torch.compile: call "
                               "optimize_for_cpu('fp32') or turn compile off.")
        packed = self._pack()
        dtype = x.dtype
        if self.kernel == 'fp16':
            out = torch.ops.quantized.linear_dynamic_fp16(x.float().contiguous(), packed)
        elif self.kernel == 'int8':
            out = torch.ops.quantized.linear_dynamic(x.float().contiguous(), packed, True)
        else:
            out = F.linear(x.to(torch.bfloat16), *packed)
        return out.to(dtype)


def _linears(module: nn.Module) -> tp.List[tp.Tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, layer) of every nn.Linear / OptimizedLinear under `module`."""
    found = []
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, (nn.Linear, OptimizedLinear)):
                found.append((parent, name, child))
    return found


def restore_linears(module: nn.Module) -> int:
    """Swap every OptimizedLinear under `module` back to a plain nn.Linear; returns how many."""
    count = 0
    for parent, name, child in _linears(module):
        if isinstance(child, OptimizedLinear):
            setattr(parent, name, child.to_linear())
            count += 1
    return count


def uses_packed_kernel(module: nn.Module) -> bool:
    """Whether a layer under `module` computes from packed reduced-precision weights."""
    return any(isinstance(m, OptimizedLinear) and m.kernel not in ('onednn', 'f_linear') for m in module.modules())


def fp16_exact(module: nn.Module) -> bool:
    """Whether every linear weight under `module` is float16-representable (fp16 kernel exact)."""
    with torch.no_grad():
        for _, _, child in _linears(module):
            w = child.weight
            if w.dtype != torch.float16 and not torch.equal(w.detach().half().to(w.dtype), w.detach()):
                return False
    return True


def exact_kernels(module: nn.Module) -> tp.List[str]:
    """The kernels available here that compute exactly (up to summation order) with these weights."""
    kernels = ['onednn'] if onednn_available() else []
    kernels.append('f_linear')
    if fbgemm_available() and fp16_exact(module):
        kernels.append('fp16')
    return kernels


def choose_kernel(module: nn.Module, candidates: tp.Sequence[str], rows: int = 2,
                  max_bytes: int = 256 * 2 ** 20, repeats: int = 5) -> tp.Tuple[str, tp.Dict[str, float]]:
    """Time each candidate kernel on the module's own linear weights; return the fastest and the timings.

    One pass multiplies `rows` rows by the weights (up to `max_bytes` of them, more than the
    caches hold, so they stream from memory as in decoding); the best of `repeats` passes is
    kept, in milliseconds. A candidate that fails to run is skipped.
    """
    layers, total = [], 0
    for _, _, child in _linears(module):
        layers.append(child)
        total += child.weight.numel() * child.weight.element_size()
        if total >= max_bytes:
            break
    if not layers or len(candidates) == 1:
        return candidates[0], {}
    timings: tp.Dict[str, float] = {}
    probes: tp.Dict[str, tp.List[OptimizedLinear]] = {}
    inputs = [torch.randn(rows, layer.in_features, dtype=layer.weight.dtype) for layer in layers]
    with torch.no_grad():
        for kernel in candidates:
            probes[kernel] = [OptimizedLinear(layer if isinstance(layer, nn.Linear) else layer.to_linear(), kernel)
                              for layer in layers]
            try:
                for probe, x in zip(probes[kernel], inputs):
                    probe(x)  # packs, and warms oneDNN's primitive cache
            except RuntimeError as exc:
                logger.info("Linear kernel %s unavailable here: %s", kernel, exc)
                del probes[kernel]
        # Kernels take turns at each repeat, so a burst of load from other processes hits them
        # alike instead of spoiling one kernel's measurements; the best pass of each is kept.
        for _ in range(repeats):
            for kernel, kernel_probes in probes.items():
                start = time.perf_counter()
                for probe, x in zip(kernel_probes, inputs):
                    probe(x)
                elapsed = (time.perf_counter() - start) * 1000
                timings[kernel] = min(timings.get(kernel, float('inf')), elapsed)
    if not timings:
        return candidates[-1], timings
    return min(timings, key=lambda k: timings[k]), timings


def optimize_linears(module: nn.Module, precision: str = 'auto', kernel: tp.Optional[str] = None,
                     rows: int = 2, compile: bool = False) -> tp.Tuple[str, tp.Dict[str, float]]:
    """Swap the nn.Linear layers under `module` for OptimizedLinear; returns the kernel used and the
    timings (ms per pass) it was chosen from, if measured.

    precision: 'auto' (the fastest exact kernel, measured on these weights: float16 packing only
    if the weights are float16-representable), 'fp32' (fastest float32 kernel), 'fp16', 'bf16',
    'int8' (the reduced precisions are never picked by 'auto'). `kernel` forces one of
    KERNELS. `rows`: rows per product to measure with (2 for one decoding step with CFG).
    `compile`: keep the oneDNN kernel opaque to torch.compile.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}, expected one of {PRECISIONS}.")
    if kernel is not None:
        if kernel not in KERNELS:
            raise ValueError(f"Unknown linear kernel {kernel!r}, expected one of {KERNELS}.")
        chosen, timings = kernel, {}
    elif precision in ('fp16', 'bf16', 'int8'):
        chosen, timings = precision, {}
    else:
        candidates = exact_kernels(module)
        if precision == 'fp32' or compile:
            candidates = [k for k in candidates if k != 'fp16']
        chosen, timings = choose_kernel(module, candidates, rows=rows)
    if chosen in ('fp16', 'int8') and not fbgemm_available():
        raise RuntimeError(f"The '{chosen}' kernel needs FBGEMM (x86 CPUs), which this PyTorch build lacks; use "
                           "precision='bf16' or 'fp32'.")
    if compile:
        if chosen not in ('onednn', 'f_linear'):
            raise ValueError(f"compile=True needs a float32 kernel, not {chosen!r}.")
        if chosen == 'onednn':
            register_compile_op()
    for parent, name, child in _linears(module):
        plain = child if isinstance(child, nn.Linear) else child.to_linear()
        layer = OptimizedLinear(plain, chosen)
        layer.compile_op = compile
        setattr(parent, name, layer)
    summary = ', '.join(f'{k} {v:.1f} ms' for k, v in timings.items())
    logger.info("%s: linear kernel %r%s", type(module).__name__, chosen, f" (measured: {summary})" if summary else '')
    return chosen, timings
