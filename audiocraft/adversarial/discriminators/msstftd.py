"""Multi-scale STFT discriminator (EnCodec): 2D convolutions over complex spectrograms."""
import typing as tp

import torch
from einops import rearrange
from torch import nn

from ...modules.conv import NormConv2d
from ...modules.spectral import Spectrogram
from .base import MultiDiscriminator, apply_conv_stack


def get_2d_padding(kernel_size: tp.Tuple[int, int], dilation: tp.Tuple[int, int] = (1, 1)) -> tp.Tuple[int, int]:
    return (((kernel_size[0] - 1) * dilation[0]) // 2, ((kernel_size[1] - 1) * dilation[1]) // 2)


class DiscriminatorSTFT(nn.Module):
    """Discriminator on the real and imaginary parts of one STFT resolution.

    Args:
        filters: width of the first conv.
        in_channels, out_channels: audio channels and logit channels.
        n_fft, hop_length, win_length: STFT parameters.
        max_filters, filters_scale: width of inner conv `i` is min(filters_scale**(i+1) * filters, max).
        kernel_size, dilations, stride: inner convs (dilation along time).
        normalized: normalize the STFT by its window.
        norm: normalization of the convolutions (the first one has none).
        activation, activation_params: a `torch.nn` activation and its arguments.
    """

    def __init__(self, filters: int, in_channels: int = 1, out_channels: int = 1,
                 n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024, max_filters: int = 1024,
                 filters_scale: int = 1, kernel_size: tp.Tuple[int, int] = (3, 9),
                 dilations: tp.Sequence[int] = [1, 2, 4], stride: tp.Tuple[int, int] = (1, 2),
                 normalized: bool = True, norm: str = 'weight_norm', activation: str = 'LeakyReLU',
                 activation_params: dict = {'negative_slope': 0.2}):
        super().__init__()
        if len(kernel_size) != 2 or len(stride) != 2:
            raise ValueError("DiscriminatorSTFT needs 2D kernel_size and stride.")
        kernel_size = (int(kernel_size[0]), int(kernel_size[1]))
        stride = (int(stride[0]), int(stride[1]))
        self.filters = filters
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.normalized = normalized
        self.activation = getattr(torch.nn, activation)(**activation_params)
        self.spec_transform = Spectrogram(
            n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length, window_fn=torch.hann_window,
            normalized=self.normalized, center=False, pad_mode=None, power=None)
        spec_channels = 2 * self.in_channels
        self.convs = nn.ModuleList()
        self.convs.append(
            NormConv2d(spec_channels, self.filters, kernel_size=kernel_size, padding=get_2d_padding(kernel_size))
        )
        in_chs = min(filters_scale * self.filters, max_filters)
        for i, dilation in enumerate(dilations):
            out_chs = min((filters_scale ** (i + 1)) * self.filters, max_filters)
            self.convs.append(NormConv2d(in_chs, out_chs, kernel_size=kernel_size, stride=stride,
                                         dilation=(dilation, 1), padding=get_2d_padding(kernel_size, (dilation, 1)),
                                         norm=norm))
            in_chs = out_chs
        out_chs = min((filters_scale ** (len(dilations) + 1)) * self.filters, max_filters)
        square = (kernel_size[0], kernel_size[0])
        self.convs.append(NormConv2d(in_chs, out_chs, kernel_size=square, padding=get_2d_padding(square),
                                     norm=norm))
        self.conv_post = NormConv2d(out_chs, self.out_channels, kernel_size=square, padding=get_2d_padding(square),
                                    norm=norm)

    def forward(self, x: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.List[torch.Tensor]]:
        z = self.spec_transform(x)  # [B, C, freqs, frames], complex
        z = torch.cat([z.real, z.imag], dim=1)
        z = rearrange(z, 'b c w t -> b c t w')
        return apply_conv_stack(z, self.convs, self.activation, self.conv_post)


class MultiScaleSTFTDiscriminator(MultiDiscriminator):
    """One DiscriminatorSTFT per (n_fft, hop_length, win_length) triple; extra kwargs go to each."""

    def __init__(self, filters: int, in_channels: int = 1, out_channels: int = 1, sep_channels: bool = False,
                 n_ffts: tp.Sequence[int] = [1024, 2048, 512], hop_lengths: tp.Sequence[int] = [256, 512, 128],
                 win_lengths: tp.Sequence[int] = [1024, 2048, 512], **kwargs):
        super().__init__()
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("MultiScaleSTFTDiscriminator needs n_ffts, hop_lengths, win_lengths of equal length.")
        self.sep_channels = sep_channels
        self.discriminators = nn.ModuleList([
            DiscriminatorSTFT(filters, in_channels=in_channels, out_channels=out_channels,
                              n_fft=n_ffts[i], win_length=win_lengths[i], hop_length=hop_lengths[i], **kwargs)
            for i in range(len(n_ffts))
        ])

    def _separate_channels(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        return x.view(-1, 1, T)
