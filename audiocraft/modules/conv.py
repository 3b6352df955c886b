"""Convolutions with weight/time-group normalisation and AudioCraft's padding rules.

`StreamableConv1d` / `StreamableConvTranspose1d` pad (or trim) so that the output
length only depends on the input length and the stride, exactly as AudioCraft does,
which is what makes released EnCodec checkpoints reproduce their outputs. Causal
variants can also run chunk by chunk inside `StreamingModule.streaming()`.
"""
import math
import typing as tp
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from .streaming import StreamingModule
from ..utils.errors import InvalidArgumentError

CONV_NORMALIZATIONS = frozenset(['none', 'weight_norm', 'spectral_norm', 'time_group_norm'])


def apply_parametrization_norm(module: nn.Module, norm: str = 'none') -> nn.Module:
    """Apply weight or spectral norm to `module`.

    Weight norm is the old-style hook (`torch.nn.utils.weight_norm`) on purpose: it stores the
    parameters as `weight_g` / `weight_v`, the key names found in released checkpoints.
    """
    if norm not in CONV_NORMALIZATIONS:
        raise InvalidArgumentError(f"Unknown norm {norm!r}, expected one of {sorted(CONV_NORMALIZATIONS)}.")
    if norm == 'weight_norm':
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            module = nn.utils.weight_norm(module)
        module.register_forward_hook(_detach_weight_norm_weight)
        return module
    if norm == 'spectral_norm':
        return nn.utils.spectral_norm(module)
    return module


def _detach_weight_norm_weight(module: nn.Module, args: tp.Any, output: tp.Any) -> None:
    # The hook-computed `weight` is a non-leaf tensor that would make `copy.deepcopy(model)`
    # fail after a forward pass; the autograd graph keeps its own reference to it.
    weight = module.__dict__.get('weight')
    if isinstance(weight, torch.Tensor) and 'weight' not in module._parameters:
        module.weight = weight.detach()


def get_norm_module(module: nn.Module, causal: bool = False, norm: str = 'none', **norm_kwargs) -> nn.Module:
    """Return the normalisation applied after the convolution (GroupNorm(1) for 'time_group_norm')."""
    if norm not in CONV_NORMALIZATIONS:
        raise InvalidArgumentError(f"Unknown norm {norm!r}, expected one of {sorted(CONV_NORMALIZATIONS)}.")
    if norm == 'time_group_norm':
        if causal:
            raise InvalidArgumentError("GroupNorm doesn't support causal evaluation.")
        assert isinstance(module, nn.modules.conv._ConvNd)
        return nn.GroupNorm(1, module.out_channels, **norm_kwargs)
    return nn.Identity()


def get_extra_padding_for_conv1d(x: torch.Tensor, kernel_size: int, stride: int, padding_total: int = 0) -> int:
    """Right padding needed so that the last window of the convolution is full."""
    length = x.shape[-1]
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def pad_for_conv1d(x: torch.Tensor, kernel_size: int, stride: int, padding_total: int = 0) -> torch.Tensor:
    """Zero-pad `x` on the right so that the last window of the convolution is full."""
    extra_padding = get_extra_padding_for_conv1d(x, kernel_size, stride, padding_total)
    return F.pad(x, (0, extra_padding))


def pad1d(x: torch.Tensor, paddings: tp.Tuple[int, int], mode: str = 'constant', value: float = 0.) -> torch.Tensor:
    """`F.pad` on the last dim that also accepts 'reflect' on inputs shorter than the padding.

    Reflection of a too short input is made possible by zero-padding it first, then
    removing that temporary zero padding from the result.
    """
    length = x.shape[-1]
    padding_left, padding_right = paddings
    assert padding_left >= 0 and padding_right >= 0, (padding_left, padding_right)
    if mode == 'reflect':
        max_pad = max(padding_left, padding_right)
        extra_pad = 0
        if length <= max_pad:
            extra_pad = max_pad - length + 1
            x = F.pad(x, (0, extra_pad))
        padded = F.pad(x, paddings, mode, value)
        end = padded.shape[-1] - extra_pad
        return padded[..., :end]
    return F.pad(x, paddings, mode, value)


def unpad1d(x: torch.Tensor, paddings: tp.Tuple[int, int]) -> torch.Tensor:
    """Remove `paddings` (left, right) from the last dim."""
    padding_left, padding_right = paddings
    assert padding_left >= 0 and padding_right >= 0, (padding_left, padding_right)
    assert (padding_left + padding_right) <= x.shape[-1]
    end = x.shape[-1] - padding_right
    return x[..., padding_left: end]


class _NormConvBase(nn.Module):
    """A convolution layer stored under `_attr` (the checkpoint key prefix), then a normalisation."""
    _layer: tp.Type[nn.Module] = nn.Conv1d
    _attr: str = 'conv'

    def __init__(self, *args, causal: bool = False, norm: str = 'none',
                 norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None, **kwargs):
        super().__init__()
        layer = apply_parametrization_norm(self._layer(*args, **kwargs), norm)
        setattr(self, self._attr, layer)
        self.norm = get_norm_module(layer, causal, norm, **(norm_kwargs or {}))
        self.norm_type = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(getattr(self, self._attr)(x))


class NormConv1d(_NormConvBase):
    """`nn.Conv1d` wrapped with a normalisation (keys `conv.weight_g`, `conv.weight_v`, ...)."""
    _layer = nn.Conv1d


class NormConv2d(_NormConvBase):
    """`nn.Conv2d` wrapped with a normalisation."""
    _layer = nn.Conv2d

    def __init__(self, *args, norm: str = 'none', norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None, **kwargs):
        super().__init__(*args, causal=False, norm=norm, norm_kwargs=norm_kwargs, **kwargs)


class NormConvTranspose1d(_NormConvBase):
    """`nn.ConvTranspose1d` wrapped with a normalisation (keys `convtr.weight_g`, ...)."""
    _layer = nn.ConvTranspose1d
    _attr = 'convtr'


class NormConvTranspose2d(_NormConvBase):
    """`nn.ConvTranspose2d` wrapped with a normalisation."""
    _layer = nn.ConvTranspose2d
    _attr = 'convtr'

    def __init__(self, *args, norm: str = 'none', norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None, **kwargs):
        super().__init__(*args, causal=False, norm=norm, norm_kwargs=norm_kwargs, **kwargs)


def _check_input(x: torch.Tensor, channels: int, name: str) -> None:
    if x.dim() != 3:
        raise InvalidArgumentError(f"{name} expects a [B, C, T] tensor, got shape {tuple(x.shape)}.")
    if x.shape[1] != channels:
        raise InvalidArgumentError(
            f"{name} expects {channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)}).")


class _StreamableConvBase(StreamingModule):
    """Streaming frame shared by the convolutions: `flush` adds what `_flush_tail` emits."""

    def _flush_tail(self) -> tp.List[torch.Tensor]:
        raise NotImplementedError()

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        """Process `x` (if any), then what the end of the stream releases; resets the stream state."""
        if not self._is_streaming:
            return None if x is None else self(x)
        outs = []
        if x is not None:
            outs.append(self(x))
        outs += self._flush_tail()
        self._streaming_state.clear()
        outs = [o for o in outs if o.shape[-1] > 0]
        if not outs:
            return None
        return torch.cat(outs, dim=-1)


class StreamableConv1d(_StreamableConvBase):
    """Conv1d with AudioCraft's asymmetric or causal padding.

    Non-causal: `padding_total = k_eff - stride` is split with `right = total // 2` and
    `left = total - right`, plus extra right padding so that the last window is full.
    Causal: all of `padding_total` goes left. In streaming mode (causal only), inputs are
    buffered so that the concatenation of chunk outputs and `flush()` equals the
    whole-signal output.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True, causal: bool = False,
                 norm: str = 'none', norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None,
                 pad_mode: str = 'reflect'):
        super().__init__()
        if stride > 1 and dilation > 1:
            warnings.warn("StreamableConv1d has been initialized with stride > 1 and dilation > 1"
                          f" (kernel_size={kernel_size} stride={stride}, dilation={dilation}).")
        self.conv = NormConv1d(in_channels, out_channels, kernel_size, stride,
                               dilation=dilation, groups=groups, bias=bias, causal=causal,
                               norm=norm, norm_kwargs=norm_kwargs)
        self.causal = causal
        self.pad_mode = pad_mode

    @property
    def _geometry(self) -> tp.Tuple[int, int, int]:
        conv = self.conv.conv
        kernel_size = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
        stride = conv.stride[0]
        return kernel_size, stride, kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.conv.conv.in_channels, type(self).__name__)
        if self._is_streaming:
            return self._streaming_forward(x)
        kernel_size, stride, padding_total = self._geometry
        extra_padding = get_extra_padding_for_conv1d(x, kernel_size, stride, padding_total)
        if self.causal:
            x = pad1d(x, (padding_total, extra_padding), mode=self.pad_mode)
        else:
            padding_right = padding_total // 2
            padding_left = padding_total - padding_right
            x = pad1d(x, (padding_left, padding_right + extra_padding), mode=self.pad_mode)
        return self.conv(x)

    def _streaming_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.causal:
            raise RuntimeError("Only causal StreamableConv1d can stream; build the model with causal=True.")
        kernel_size, stride, padding_total = self._geometry
        state = self._streaming_state
        empty = x.new_zeros(x.shape[0], self.conv.conv.out_channels, 0)
        if self.pad_mode == 'reflect':
            # Last raw samples, from which `flush` rebuilds the reflected right padding.
            raw = torch.cat([state['raw'], x], dim=-1) if 'raw' in state else x
            state['raw'] = raw[..., -(kernel_size + stride):]
            state['total'] = state.get('total', torch.zeros((), dtype=torch.long)) + x.shape[-1]
        if 'buffer' not in state:
            pending = state.pop('pending', None)
            if pending is not None:
                x = torch.cat([pending, x], dim=-1)
            if self.pad_mode == 'reflect' and x.shape[-1] <= padding_total:
                # Reflect padding of the start needs more samples than we have: wait for them.
                state['pending'] = x
                return empty
            x = pad1d(x, (padding_total, 0), mode=self.pad_mode)
        else:
            x = torch.cat([state['buffer'], x], dim=-1)
        n_frames = max(0, (x.shape[-1] - kernel_size) // stride + 1)
        consumed = n_frames * stride
        state['buffer'] = x[..., consumed:]
        state['done'] = state.get('done', torch.zeros((), dtype=torch.long)) + n_frames
        if n_frames == 0:
            return empty
        return self.conv(x[..., :consumed + kernel_size - stride])

    def _flush_tail(self) -> tp.List[torch.Tensor]:
        """Outputs of the right padding of the end of the stream."""
        outs = []
        state = self._streaming_state
        kernel_size, stride, padding_total = self._geometry
        if self.pad_mode == 'reflect' and 'raw' in state:
            raw = state['raw']
            if int(state['total']) <= raw.shape[-1]:
                # Short stream: `raw` is the whole signal, use the whole-signal path.
                self._is_streaming = False
                try:
                    outs.append(self(raw)[..., int(state.get('done', 0)):])
                finally:
                    self._is_streaming = True
            else:
                buffer = state['buffer']
                if buffer.shape[-1] > padding_total:
                    extra = kernel_size - buffer.shape[-1]
                    right = pad1d(raw, (0, extra), mode='reflect')[..., raw.shape[-1]:]
                    outs.append(self.conv(torch.cat([buffer, right], dim=-1)))
        elif 'buffer' in state:
            buffer = state['buffer']
            # The buffer holds `padding_total` samples of context plus the `T % stride` samples
            # that the whole-signal path completes with its extra right padding.
            if buffer.shape[-1] > padding_total:
                buffer = pad1d(buffer, (0, kernel_size - buffer.shape[-1]), mode=self.pad_mode)
                outs.append(self.conv(buffer))
        return outs


class StreamableConvTranspose1d(_StreamableConvBase):
    """ConvTranspose1d that trims `padding_total = kernel_size - stride` like AudioCraft.

    Non-causal: trims `right = total // 2`, `left = total - right`. Causal: trims
    `right = ceil(total * trim_right_ratio)` and the rest on the left. In streaming mode
    (causal only) the overlapping tail of each chunk is carried to the next one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 causal: bool = False, norm: str = 'none', trim_right_ratio: float = 1.,
                 norm_kwargs: tp.Optional[tp.Dict[str, tp.Any]] = None):
        super().__init__()
        self.convtr = NormConvTranspose1d(in_channels, out_channels, kernel_size, stride,
                                          causal=causal, norm=norm, norm_kwargs=norm_kwargs)
        self.causal = causal
        self.trim_right_ratio = trim_right_ratio
        if not (self.causal or self.trim_right_ratio == 1.):
            raise InvalidArgumentError("`trim_right_ratio` != 1.0 only makes sense for causal convolutions")
        if not 0. <= self.trim_right_ratio <= 1.:
            raise InvalidArgumentError(f"trim_right_ratio must be in [0, 1], got {trim_right_ratio}")

    def _paddings(self) -> tp.Tuple[int, int]:
        convtr = self.convtr.convtr
        padding_total = convtr.kernel_size[0] - convtr.stride[0]
        if self.causal:
            padding_right = math.ceil(padding_total * self.trim_right_ratio)
        else:
            padding_right = padding_total // 2
        return padding_total - padding_right, padding_right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.convtr.convtr.in_channels, type(self).__name__)
        if self._is_streaming:
            return self._streaming_forward(x)
        y = self.convtr(x)
        return unpad1d(y, self._paddings())

    def _bias(self, y: torch.Tensor) -> tp.Union[torch.Tensor, float]:
        bias = self.convtr.convtr.bias
        if bias is None or self.convtr.norm_type == 'time_group_norm':
            return 0.
        return bias.to(y)[:, None]

    def _streaming_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.causal:
            raise RuntimeError("Only causal StreamableConvTranspose1d can stream; build with causal=True.")
        if self.convtr.norm_type == 'time_group_norm':
            raise RuntimeError("time_group_norm cannot stream.")
        convtr = self.convtr.convtr
        stride = convtr.stride[0]
        padding_total = convtr.kernel_size[0] - stride
        state = self._streaming_state
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], convtr.out_channels, 0)
        y = self.convtr(x)
        if 'tail' in state:
            tail = state['tail']
            y = torch.cat([y[..., :padding_total] + tail, y[..., padding_total:]], dim=-1)
        else:
            state['skip'] = torch.tensor(self._paddings()[0])
        n_out = x.shape[-1] * stride
        # The tail overlaps with the next chunk, whose own bias will be added there.
        state['tail'] = y[..., n_out:] - self._bias(y)
        return self._skip_left(y[..., :n_out])

    def _skip_left(self, out: torch.Tensor) -> torch.Tensor:
        # The left trim of the whole output may span several chunks.
        skip = int(self._streaming_state['skip'])
        cut = min(skip, out.shape[-1])
        self._streaming_state['skip'] = torch.tensor(skip - cut)
        return out[..., cut:]

    def _flush_tail(self) -> tp.List[torch.Tensor]:
        """The part of the overlapping tail kept by `trim_right_ratio`."""
        outs = []
        state = self._streaming_state
        if 'tail' in state:
            tail = state['tail']
            padding_left, _ = self._paddings()
            if padding_left > 0:
                outs.append(self._skip_left(tail[..., :padding_left] + self._bias(tail)))
        return outs
