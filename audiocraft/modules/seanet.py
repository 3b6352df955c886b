"""SEANet encoder / decoder used by EnCodec.

Module order inside `model` fixes the state_dict key names of released checkpoints
(`encoder.model.0.conv.conv.weight_v`, `decoder.model.1.lstm.weight_ih_l0`, ...).
"""
import typing as tp

import numpy as np
import torch
from torch import nn

from .conv import StreamableConv1d, StreamableConvTranspose1d
from .lstm import StreamableLSTM
from .streaming import StreamingModule, StreamingSequential
from ..utils.errors import InvalidArgumentError


def _flush(module: nn.Module, x: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
    if isinstance(module, StreamingModule):
        return module.flush(x)
    return None if x is None else module(x)


class SEANetResnetBlock(StreamingModule):
    """Residual block: (activation, conv) pairs plus an identity or 1x1-conv shortcut."""

    def __init__(self, dim: int, kernel_sizes: tp.List[int] = [3, 1], dilations: tp.List[int] = [1, 1],
                 activation: str = 'ELU', activation_params: dict = {'alpha': 1.0},
                 norm: str = 'none', norm_params: tp.Dict[str, tp.Any] = {}, causal: bool = False,
                 pad_mode: str = 'reflect', compress: int = 2, true_skip: bool = True):
        super().__init__()
        if len(kernel_sizes) != len(dilations):
            raise InvalidArgumentError("Number of kernel sizes should match number of dilations")
        act = getattr(nn, activation)
        hidden = dim // compress
        block: tp.List[nn.Module] = []
        for i, (kernel_size, dilation) in enumerate(zip(kernel_sizes, dilations)):
            in_chs = dim if i == 0 else hidden
            out_chs = dim if i == len(kernel_sizes) - 1 else hidden
            block += [
                act(**activation_params),
                StreamableConv1d(in_chs, out_chs, kernel_size=kernel_size, dilation=dilation,
                                 norm=norm, norm_kwargs=norm_params, causal=causal, pad_mode=pad_mode),
            ]
        self.block = StreamingSequential(*block)
        self.shortcut: nn.Module
        if true_skip:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = StreamableConv1d(dim, dim, kernel_size=1, norm=norm, norm_kwargs=norm_params,
                                             causal=causal, pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._is_streaming:
            return self.shortcut(x) + self.block(x)
        return self._add_aligned(self.shortcut(x), self.block(x))

    def _add_aligned(self, skip: tp.Optional[torch.Tensor], y: tp.Optional[torch.Tensor]) -> tp.Optional[torch.Tensor]:
        # While streaming, the convolution branch may hold samples back (e.g. reflect padding
        # waiting for enough input): keep the shortcut output until the branch catches up.
        state = self._streaming_state
        if skip is not None:
            skip = torch.cat([state['skip'], skip], dim=-1) if 'skip' in state else skip
            state['skip'] = skip
        if y is None:
            return None
        pending = state['skip']
        state['skip'] = pending[..., y.shape[-1]:]
        return pending[..., :y.shape[-1]] + y

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        if not self._is_streaming:
            return None if x is None else self(x)
        out = self._add_aligned(_flush(self.shortcut, x), self.block.flush(x))
        self._streaming_state.clear()
        return out


class _SEANetBase(StreamingModule):
    """What the encoder and decoder share: their geometry and the residual stacks."""
    model: StreamingSequential

    def _set_geometry(self, channels: int, dimension: int, n_filters: int, n_residual_layers: int,
                      ratios: tp.List[int], disable_norm_outer_blocks: int) -> None:
        self.channels = channels
        self.dimension = dimension
        self.n_filters = n_filters
        self.ratios = ratios
        self.n_residual_layers = n_residual_layers
        self.hop_length = int(np.prod(self.ratios))
        self.n_blocks = len(self.ratios) + 2  # first and last conv + residual blocks
        self.disable_norm_outer_blocks = disable_norm_outer_blocks
        if not 0 <= disable_norm_outer_blocks <= self.n_blocks:
            raise InvalidArgumentError("Number of blocks for which to disable norm is invalid. It should be lower or "
                                       "equal to the actual number of blocks in the network and greater or equal "
                                       "to 0.")

    @staticmethod
    def _residual_stack(dim: int, n_layers: int, residual_kernel_size: int, dilation_base: int,
                        **block_kwargs: tp.Any) -> tp.List[nn.Module]:
        """`n_layers` residual blocks with dilations growing as `dilation_base ** j`."""
        return [SEANetResnetBlock(dim, kernel_sizes=[residual_kernel_size, 1], dilations=[dilation_base ** j, 1],
                                  **block_kwargs) for j in range(n_layers)]

    def flush(self, x: tp.Optional[torch.Tensor] = None) -> tp.Optional[torch.Tensor]:
        return self.model.flush(x)


class SEANetEncoder(_SEANetBase):
    """SEANet encoder: waveform [B, channels, T] -> latent [B, dimension, T // hop_length].

    `ratios` are given in decoder order and applied reversed, as in AudioCraft.
    """

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32, n_residual_layers: int = 3,
                 ratios: tp.List[int] = [8, 5, 4, 2], activation: str = 'ELU', activation_params: dict = {'alpha': 1.0},
                 norm: str = 'none', norm_params: tp.Dict[str, tp.Any] = {}, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2, causal: bool = False,
                 pad_mode: str = 'reflect', true_skip: bool = True, compress: int = 2, lstm: int = 0,
                 disable_norm_outer_blocks: int = 0):
        super().__init__()
        self._set_geometry(channels, dimension, n_filters, n_residual_layers, list(reversed(ratios)),
                           disable_norm_outer_blocks)
        block_kwargs = dict(activation=activation, activation_params=activation_params, norm_params=norm_params,
                            causal=causal, pad_mode=pad_mode, compress=compress, true_skip=true_skip)

        act = getattr(nn, activation)
        mult = 1
        model: tp.List[nn.Module] = [
            StreamableConv1d(channels, mult * n_filters, kernel_size,
                             norm='none' if self.disable_norm_outer_blocks >= 1 else norm,
                             norm_kwargs=norm_params, causal=causal, pad_mode=pad_mode)
        ]
        for i, ratio in enumerate(self.ratios):
            block_norm = 'none' if self.disable_norm_outer_blocks >= i + 2 else norm
            model += self._residual_stack(mult * n_filters, n_residual_layers, residual_kernel_size,
                                          dilation_base, norm=block_norm, **block_kwargs)
            model += [
                act(**activation_params),
                StreamableConv1d(mult * n_filters, mult * n_filters * 2,
                                 kernel_size=ratio * 2, stride=ratio,
                                 norm=block_norm, norm_kwargs=norm_params,
                                 causal=causal, pad_mode=pad_mode),
            ]
            mult *= 2

        if lstm:
            model += [StreamableLSTM(mult * n_filters, num_layers=lstm)]

        model += [
            act(**activation_params),
            StreamableConv1d(mult * n_filters, dimension, last_kernel_size,
                             norm='none' if self.disable_norm_outer_blocks == self.n_blocks else norm,
                             norm_kwargs=norm_params, causal=causal, pad_mode=pad_mode)
        ]
        self.model = StreamingSequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise InvalidArgumentError(
                f"SEANetEncoder expects [B, {self.channels}, T] audio, got shape {tuple(x.shape)}.")
        return self.model(x)


class SEANetDecoder(_SEANetBase):
    """SEANet decoder: latent [B, dimension, T] -> waveform [B, channels, T * hop_length]."""

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32, n_residual_layers: int = 3,
                 ratios: tp.List[int] = [8, 5, 4, 2], activation: str = 'ELU', activation_params: dict = {'alpha': 1.0},
                 final_activation: tp.Optional[str] = None, final_activation_params: tp.Optional[dict] = None,
                 norm: str = 'none', norm_params: tp.Dict[str, tp.Any] = {}, kernel_size: int = 7,
                 last_kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2, causal: bool = False,
                 pad_mode: str = 'reflect', true_skip: bool = True, compress: int = 2, lstm: int = 0,
                 disable_norm_outer_blocks: int = 0, trim_right_ratio: float = 1.0):
        super().__init__()
        self._set_geometry(channels, dimension, n_filters, n_residual_layers, list(ratios), disable_norm_outer_blocks)
        block_kwargs = dict(activation=activation, activation_params=activation_params, norm_params=norm_params,
                            causal=causal, pad_mode=pad_mode, compress=compress, true_skip=true_skip)

        act = getattr(nn, activation)
        mult = int(2 ** len(self.ratios))
        model: tp.List[nn.Module] = [
            StreamableConv1d(dimension, mult * n_filters, kernel_size,
                             norm='none' if self.disable_norm_outer_blocks == self.n_blocks else norm,
                             norm_kwargs=norm_params, causal=causal, pad_mode=pad_mode)
        ]
        if lstm:
            model += [StreamableLSTM(mult * n_filters, num_layers=lstm)]

        for i, ratio in enumerate(self.ratios):
            block_norm = 'none' if self.disable_norm_outer_blocks >= self.n_blocks - (i + 1) else norm
            model += [
                act(**activation_params),
                StreamableConvTranspose1d(mult * n_filters, mult * n_filters // 2,
                                          kernel_size=ratio * 2, stride=ratio,
                                          norm=block_norm, norm_kwargs=norm_params,
                                          causal=causal, trim_right_ratio=trim_right_ratio),
            ]
            model += self._residual_stack(mult * n_filters // 2, n_residual_layers, residual_kernel_size,
                                          dilation_base, norm=block_norm, **block_kwargs)
            mult //= 2

        model += [
            act(**activation_params),
            StreamableConv1d(n_filters, channels, last_kernel_size,
                             norm='none' if self.disable_norm_outer_blocks >= 1 else norm,
                             norm_kwargs=norm_params, causal=causal, pad_mode=pad_mode)
        ]
        if final_activation is not None:
            final_act = getattr(nn, final_activation)
            model += [final_act(**(final_activation_params or {}))]
        self.model = StreamingSequential(*model)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 3 or z.shape[1] != self.dimension:
            raise InvalidArgumentError(
                f"SEANetDecoder expects [B, {self.dimension}, T] latents, got shape {tuple(z.shape)}.")
        return self.model(z)
