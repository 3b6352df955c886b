"""Multi-period discriminator (HiFi-GAN style): 2D convolutions over audio folded by a period."""
import typing as tp

import torch
from torch import nn
from torch.nn import functional as F

from ...modules.conv import NormConv2d
from .base import MultiDiscriminator, apply_conv_stack


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    return int((kernel_size * dilation - dilation) / 2)


class PeriodDiscriminator(nn.Module):
    """Discriminator on [B, C, T] audio reshaped to [B, C, T / period, period].

    Args:
        period: folding period.
        in_channels, out_channels: audio channels and logit channels.
        n_layers: number of strided convolutions.
        kernel_sizes: kernel size of the inner convolutions and of the last one.
        stride: stride along time of all inner convolutions but the last.
        filters, filters_scale, max_filters: width of layer `i` is min(filters * filters_scale**(i+1), max).
        norm: normalization of the convolutions.
        activation, activation_params: a `torch.nn` activation and its arguments.
    """

    def __init__(self, period: int, in_channels: int = 1, out_channels: int = 1,
                 n_layers: int = 5, kernel_sizes: tp.Sequence[int] = [5, 3], stride: int = 3,
                 filters: int = 8, filters_scale: int = 4, max_filters: int = 1024,
                 norm: str = 'weight_norm', activation: str = 'LeakyReLU',
                 activation_params: dict = {'negative_slope': 0.2}):
        super().__init__()
        self.period = period
        self.n_layers = n_layers
        self.activation = getattr(torch.nn, activation)(**activation_params)
        self.convs = nn.ModuleList()
        in_chs = in_channels
        for i in range(self.n_layers):
            out_chs = min(filters * (filters_scale ** (i + 1)), max_filters)
            eff_stride = 1 if i == self.n_layers - 1 else stride
            self.convs.append(NormConv2d(in_chs, out_chs, kernel_size=(kernel_sizes[0], 1), stride=(eff_stride, 1),
                                         padding=((kernel_sizes[0] - 1) // 2, 0), norm=norm))
            in_chs = out_chs
        self.conv_post = NormConv2d(in_chs, out_channels, kernel_size=(kernel_sizes[1], 1), stride=1,
                                    padding=((kernel_sizes[1] - 1) // 2, 0), norm=norm)

    def forward(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.List[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period != 0:
            n_pad = self.period - (t % self.period)
            x = F.pad(x, (0, n_pad), 'reflect')
            t = t + n_pad
        x = x.view(b, c, t // self.period, self.period)
        x, fmap = apply_conv_stack(x, self.convs, self.activation, self.conv_post)
        fmap.append(x)
        return x, fmap


class MultiPeriodDiscriminator(MultiDiscriminator):
    """One PeriodDiscriminator per period.

    Accepts AudioCraft's config spellings `kernel_size` (first kernel; the last stays 3) and
    `filter_scales` as aliases of `kernel_sizes` and `filters_scale`.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1,
                 periods: tp.Sequence[int] = [2, 3, 5, 7, 11], **kwargs):
        super().__init__()
        if 'kernel_size' in kwargs:
            kwargs['kernel_sizes'] = [kwargs.pop('kernel_size'), 3]
        if 'filter_scales' in kwargs:
            kwargs['filters_scale'] = kwargs.pop('filter_scales')
        self.discriminators = nn.ModuleList([
            PeriodDiscriminator(p, in_channels, out_channels, **kwargs) for p in periods
        ])
