"""Multi-scale discriminator (MelGAN style): 1D grouped convolutions on audio at decreasing rates."""
import typing as tp

import numpy as np
import torch
from torch import nn

from ...modules.conv import NormConv1d
from .base import MultiDiscriminator, apply_conv_stack


class ScaleDiscriminator(nn.Module):
    """Waveform discriminator made of strided grouped 1D convolutions.

    Args:
        in_channels, out_channels: audio channels and logit channels.
        kernel_sizes: two odd sizes; the first conv uses their product, the last two use each.
        filters, max_filters: width of the first conv, and cap on all widths.
        downsample_scales: stride (and width multiplier) of each inner conv.
        inner_kernel_sizes, groups, strides, paddings: per inner conv overrides (defaults derive
            from the downsample scale: kernel 10 * scale + 1, stride scale, groups in_channels // 4).
        norm: normalization of the convolutions.
        activation, activation_params: a `torch.nn` activation and its arguments.
        pad, pad_params: `torch.nn` padding module applied before the first conv.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, kernel_sizes: tp.Sequence[int] = [5, 3],
                 filters: int = 16, max_filters: int = 1024, downsample_scales: tp.Sequence[int] = [4, 4, 4, 4],
                 inner_kernel_sizes: tp.Optional[tp.Sequence[int]] = None,
                 groups: tp.Optional[tp.Sequence[int]] = None,
                 strides: tp.Optional[tp.Sequence[int]] = None, paddings: tp.Optional[tp.Sequence[int]] = None,
                 norm: str = 'weight_norm', activation: str = 'LeakyReLU',
                 activation_params: dict = {'negative_slope': 0.2}, pad: str = 'ReflectionPad1d',
                 pad_params: dict = {}):
        super().__init__()
        if len(kernel_sizes) != 2 or kernel_sizes[0] % 2 != 1 or kernel_sizes[1] % 2 != 1:
            raise ValueError(f"ScaleDiscriminator needs two odd kernel_sizes, got {kernel_sizes}.")
        for name, value in [('inner_kernel_sizes', inner_kernel_sizes), ('groups', groups),
                            ('strides', strides), ('paddings', paddings)]:
            if value is not None and len(value) != len(downsample_scales):
                raise ValueError(f"ScaleDiscriminator: {name} must have one entry per downsample scale.")
        self.activation = getattr(torch.nn, activation)(**activation_params)
        self.convs = nn.ModuleList()
        first_kernel = int(np.prod(kernel_sizes))
        self.convs.append(nn.Sequential(
            getattr(torch.nn, pad)((first_kernel - 1) // 2, **pad_params),
            NormConv1d(in_channels, filters, kernel_size=first_kernel, stride=1, norm=norm)
        ))
        in_chs = filters
        for i, downsample_scale in enumerate(downsample_scales):
            out_chs = min(in_chs * downsample_scale, max_filters)
            default_kernel_size = downsample_scale * 10 + 1
            default_padding = (default_kernel_size - 1) // 2
            self.convs.append(NormConv1d(
                in_chs, out_chs,
                kernel_size=inner_kernel_sizes[i] if inner_kernel_sizes else default_kernel_size,
                stride=strides[i] if strides else downsample_scale,
                groups=groups[i] if groups else in_chs // 4,
                padding=paddings[i] if paddings else default_padding,
                norm=norm))
            in_chs = out_chs
        out_chs = min(in_chs * 2, max_filters)
        self.convs.append(NormConv1d(in_chs, out_chs, kernel_size=kernel_sizes[0], stride=1,
                                     padding=(kernel_sizes[0] - 1) // 2, norm=norm))
        self.conv_post = NormConv1d(out_chs, out_channels, kernel_size=kernel_sizes[1], stride=1,
                                    padding=(kernel_sizes[1] - 1) // 2, norm=norm)

    def forward(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.List[torch.Tensor]]:
        x, fmap = apply_conv_stack(x, self.convs, self.activation, self.conv_post)
        fmap.append(x)
        return x, fmap


class MultiScaleDiscriminator(MultiDiscriminator):
    """One ScaleDiscriminator per entry of `scale_norms`; each one sees the audio average-pooled once more."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, downsample_factor: int = 2,
                 scale_norms: tp.Sequence[str] = ['weight_norm', 'weight_norm', 'weight_norm'], **kwargs):
        super().__init__()
        self.discriminators = nn.ModuleList([
            ScaleDiscriminator(in_channels, out_channels, norm=norm, **kwargs) for norm in scale_norms
        ])
        self.downsample = nn.AvgPool1d(downsample_factor * 2, downsample_factor, padding=downsample_factor)

    def _discriminator_inputs(self, x: torch.Tensor) -> tp.Iterator[torch.Tensor]:
        for i in range(len(self.discriminators)):
            if i != 0:
                # Each scale sees the audio pooled once more than the previous one (MelGAN design).
                x = self.downsample(x)
            yield x
