"""Scale-invariant signal-to-noise ratio, as a loss (negated SI-SNR, in dB)."""
import math
import typing as tp

import torch
from torch import nn
from torch.nn import functional as F


def _unfold(a: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """Frames [*OT, T] into [*OT, F, K] with `F = ceil(T / stride)`, zero padding the end."""
    *shape, length = a.shape
    n_frames = math.ceil(length / stride)
    tgt_length = (n_frames - 1) * stride + kernel_size
    a = F.pad(a, (0, tgt_length - length)).contiguous()
    strides = list(a.stride())
    strides = strides[:-1] + [stride, 1]
    return a.as_strided([*shape, n_frames, kernel_size], strides)


def _center(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(-1, True)


def _norm2(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).sum(-1, True)


class SISNR(nn.Module):
    """Negated SI-SNR between an estimate and a reference, both [B, C, T]; lower is better.

    Args:
        sample_rate: sample rate of the signals.
        segment: evaluate on chunks of that many seconds, averaging over chunks; None for the whole signal.
        overlap: overlap between chunks, e.g. 0.5 for 50%.
        epsilon: numerical stability term (scaled by the chunk length).
    """

    def __init__(self, sample_rate: int = 16000, segment: tp.Optional[float] = 20, overlap: float = 0.5,
                 epsilon: float = torch.finfo(torch.float32).eps):
        super().__init__()
        self.sample_rate = sample_rate
        self.segment = segment
        self.overlap = overlap
        self.epsilon = epsilon

    def forward(self, out_sig: torch.Tensor, ref_sig: torch.Tensor) -> torch.Tensor:
        if ref_sig.dim() != 3 or ref_sig.shape != out_sig.shape:
            raise ValueError(f"SISNR expects two [B, C, T] tensors of equal shape, "
                             f"got {tuple(out_sig.shape)} and {tuple(ref_sig.shape)}.")
        _, _, T = ref_sig.shape
        if self.segment is None:
            frame = T
            stride = T
        else:
            frame = int(self.segment * self.sample_rate)
            stride = int(frame * (1 - self.overlap))

        epsilon = self.epsilon * frame  # keep epsilon proportional to the frame energy scale

        gt = _center(_unfold(ref_sig, frame, stride))
        est = _center(_unfold(out_sig, frame, stride))
        dot = torch.einsum("bcft,bcft->bcf", gt, est)

        proj = dot[:, :, :, None] * gt / (epsilon + _norm2(gt))
        noise = est - proj

        sisnr = 10 * (torch.log10(epsilon + _norm2(proj)) - torch.log10(epsilon + _norm2(noise)))
        return -1 * sisnr[..., 0].mean()
