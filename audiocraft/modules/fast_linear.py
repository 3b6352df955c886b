"""Inference-time linear kernels: fast small-batch float32 matmuls on CPU, and opt-in packed weights.

Why this exists: autoregressive decoding multiplies 1 to 8 rows (batch x CFG) by every weight
matrix at each step, so it is bound by how fast the weights stream from memory. On CPU, the
default float32 GEMM (MKL) handles such skinny products at a fraction of the memory bandwidth
(measured 6 to 8 GB/s on a 2-core AMD EPYC that streams ~37 GB/s), while oneDNN's inner product
(`torch.ops.mkldnn._linear_pointwise`) reads the same float32 weights 4x faster; on large
products (MAGNeT's full-sequence passes, prompts) it also runs ~2x more FLOP/s there. `linear`
below uses it at CPU inference (no gradient needed); results differ from `F.linear` only by the
float32 summation order (~1e-6 relative).

Reduced precision is opt-in, per model, with `pack_linear_weights(module, precision)`: each
weight gets a packed copy (the float32 parameter stays, so training and `state_dict` are
unchanged) that inference uses while the parameter is unchanged:

- 'fp16': weights stored as float16, activations and accumulation in float32 (FBGEMM). Released
  AudioCraft weights *are* float16, so for them this is exact up to summation order.
- 'bf16': weights and activations in bfloat16, float32 accumulation, bfloat16 output (oneDNN).
- 'int8': dynamic quantization: int8 per-output-channel weights, activations quantized per call.
"""
from functools import lru_cache
import typing as tp

import torch
from torch import nn
import torch.nn.functional as F

PRECISIONS = ('fp32', 'fp16', 'bf16', 'int8')
_PACKED_ATTR = '_packed_linears'


@lru_cache(maxsize=None)
def _onednn_linear_available() -> bool:
    """Whether this PyTorch build has oneDNN's linear op (probed once; a capability, not a setting)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        x = torch.zeros(1, 4)
        torch.ops.mkldnn._linear_pointwise(x, torch.zeros(2, 4), None, 'none', [], '')
        return True
    except Exception:
        return False


@lru_cache(maxsize=None)
def _fbgemm_available() -> bool:
    """Whether FBGEMM's packed float16 / int8 linear ops are available (x86 builds)."""
    try:
        packed = torch.ops.quantized.linear_prepack_fp16(torch.zeros(2, 4), None)
        torch.ops.quantized.linear_dynamic_fp16(torch.zeros(1, 4), packed)
        return True
    except Exception:
        return False


@torch.library.custom_op("audiocraft::onednn_linear", mutates_args=())
def _onednn_linear_op(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
    """The float32 CPU inference linear as one opaque op: torch.compile keeps this kernel
    instead of lowering the product to its own (much slower, for a few rows) GEMM."""
    if _onednn_linear_available():
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, 'none', [], '')
    return F.linear(x, weight, bias)


@_onednn_linear_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def _needs_autograd(*tensors: tp.Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class PackedLinear:
    """A linear layer's weight (and bias) prepacked in one precision, for inference.

    It remembers which tensor it was packed from (storage, offset, shape and version counter)
    and repacks itself if that tensor was modified in place or replaced.
    """

    def __init__(self, weight: torch.Tensor, bias: tp.Optional[torch.Tensor], precision: str):
        if precision not in PRECISIONS or precision == 'fp32':
            raise ValueError(f"Cannot pack for precision {precision!r}; expected one of {PRECISIONS[1:]}.")
        if weight.device.type != 'cpu':
            raise RuntimeError(f"Packed {precision} linear weights are a CPU feature; the weight is on "
                               f"{weight.device}. Use autocast on accelerators instead.")
        if precision in ('fp16', 'int8') and not _fbgemm_available():
            raise RuntimeError(f"Precision {precision!r} needs FBGEMM (x86 CPUs), which this PyTorch build "
                               "lacks; use precision='bf16' or 'fp32'.")
        self.precision = precision
        self._pack(weight, bias)

    def _key(self, weight: torch.Tensor) -> tp.Tuple[int, int, tp.Tuple[int, ...], int]:
        return (weight.data_ptr(), weight.storage_offset(), tuple(weight.shape), weight._version)

    def _pack(self, weight: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> None:
        w = weight.detach().float().contiguous()
        b = None if bias is None else bias.detach().float().contiguous()
        self.out_features = w.shape[0]
        self._source = self._key(weight)
        self._bias_source = None if bias is None else self._key(bias)
        if self.precision == 'fp16':
            self._packed = torch.ops.quantized.linear_prepack_fp16(w, b)
        elif self.precision == 'int8':
            scales = (w.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
            zero_points = torch.zeros(w.shape[0], dtype=torch.long)
            qweight = torch.quantize_per_channel(w, scales, zero_points, axis=0, dtype=torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qweight, b)
        else:  # bf16
            self._packed = (w.bfloat16(), None if b is None else b.bfloat16())

    def is_packed_from(self, weight: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> bool:
        """Whether the packed copy still reflects `weight` and `bias`."""
        bias_key = None if bias is None else self._key(bias)
        return self._key(weight) == self._source and bias_key == self._bias_source

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor]) -> torch.Tensor:
        if not self.is_packed_from(weight, bias):
            self._pack(weight, bias)
        dtype = x.dtype
        if self.precision == 'fp16':
            out = torch.ops.quantized.linear_dynamic_fp16(x.float().contiguous(), self._packed)
        elif self.precision == 'int8':
            out = torch.ops.quantized.linear_dynamic(x.float().contiguous(), self._packed, True)
        else:
            w, b = self._packed
            out = F.linear(x.to(torch.bfloat16), w, b)
        return out.to(dtype)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
           packed: tp.Optional[PackedLinear] = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, with a faster kernel at CPU inference when one applies.

    `packed` (opt-in reduced precision) is used whenever no gradient is needed; otherwise,
    float32 products on CPU go through oneDNN when no gradient is needed, also under
    torch.compile (as the opaque op `audiocraft::onednn_linear`).
    """
    if _needs_autograd(x, weight, bias):
        return F.linear(x, weight, bias)
    compiling = torch.compiler.is_compiling()
    if packed is not None:
        if compiling:
            raise RuntimeError("Packed reduced-precision weights (optimize_for_cpu) do not combine with "
                               "torch.compile; use one or the other.")
        return packed(x, weight, bias)
    if (x.device.type == 'cpu' and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.dim() >= 2 and x.numel() > 0
            and weight.is_contiguous() and (bias is None or bias.dtype == torch.float32)
            and not torch.is_autocast_enabled('cpu')):  # leave mixed precision to autocast
        if compiling:
            return _onednn_linear_op(x, weight, bias)
        if _onednn_linear_available():
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, 'none', [], '')
    return F.linear(x, weight, bias)


def get_packed(module: nn.Module, key: str = '') -> tp.Optional[PackedLinear]:
    """The packed weight registered on `module` under `key`, if any."""
    packed = module.__dict__.get(_PACKED_ATTR)
    return None if packed is None else packed.get(key)


class FastLinear(nn.Linear):
    """`nn.Linear` (same parameters and state_dict) whose inference forward uses `linear` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, get_packed(self))

    def packable_linears(self) -> tp.Dict[str, tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]]:
        return {'': (self.weight, self.bias)}


def has_packed_weights(module: nn.Module) -> bool:
    """Whether any submodule of `module` carries packed weights (`pack_linear_weights`)."""
    return any(sub.__dict__.get(_PACKED_ATTR) for sub in module.modules())


def pack_linear_weights(module: nn.Module, precision: str = 'fp32') -> int:
    """Pack the linear weights of every submodule of `module` that supports it for `precision`.

    Submodules opt in by defining `packable_linears()` -> {key: (weight, bias)} and calling
    `linear(..., packed=get_packed(self, key))`. 'fp32' removes packed copies (the default,
    unpacked path). Returns the number of weights packed. The packed copies are not part of
    the state_dict; they add 2 bytes (fp16, bf16) or 1 byte (int8) per weight parameter.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}, expected one of {PRECISIONS}.")
    count = 0
    for sub in module.modules():
        describe = getattr(sub, 'packable_linears', None)
        if describe is None:
            continue
        sub.__dict__.pop(_PACKED_ATTR, None)
        if precision == 'fp32':
            continue
        with torch.no_grad():
            sub.__dict__[_PACKED_ATTR] = {
                key: PackedLinear(weight, bias, precision) for key, (weight, bias) in describe().items()}
        count += len(sub.__dict__[_PACKED_ATTR])
    return count
