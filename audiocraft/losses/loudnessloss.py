"""Loudness-ratio losses (AudioCraft's watermarking losses).

They measure how loud the difference between an output and its reference is, relative to the
reference, per time chunk (and per frequency band for `TFLoudnessRatio`). The loudest chunks
dominate through a softmax weighting, so minimising the loss keeps the difference quiet everywhere.
Loudness is a simplified ITU-R BS.1770 measure (`basic_loudness`): K-weighting biquads, 400 ms
gates with 75 % overlap, no absolute/relative gating.
"""
import math
import typing as tp

import julius
import torch
from torch import nn

from .sisnr import _unfold

__all__ = ['basic_loudness', 'TLoudnessRatio', 'TFLoudnessRatio']

Coefficients = tp.Tuple[tp.List[float], tp.List[float]]


def _treble_biquad(sample_rate: int, gain: float, central_freq: float, q: float) -> Coefficients:
    """(b, a) of a treble shelving biquad (Audio EQ Cookbook, as torchaudio.functional.treble_biquad)."""
    w0 = 2 * math.pi * central_freq / sample_rate
    alpha = math.sin(w0) / 2 / q
    A = math.exp(gain / 40 * math.log(10))
    temp1 = 2 * math.sqrt(A) * alpha
    temp2 = (A - 1) * math.cos(w0)
    temp3 = (A + 1) * math.cos(w0)
    b = [A * ((A + 1) + temp2 + temp1), -2 * A * ((A - 1) + temp3), A * ((A + 1) + temp2 - temp1)]
    a = [(A + 1) - temp2 + temp1, 2 * ((A - 1) - temp3), (A + 1) - temp2 - temp1]
    return b, a


def _highpass_biquad(sample_rate: int, cutoff_freq: float, q: float) -> Coefficients:
    """(b, a) of a high-pass biquad (Audio EQ Cookbook, as torchaudio.functional.highpass_biquad)."""
    w0 = 2 * math.pi * cutoff_freq / sample_rate
    alpha = math.sin(w0) / 2 / q
    b0 = (1 + math.cos(w0)) / 2
    return [b0, -1 - math.cos(w0), b0], [1 + alpha, -2 * math.cos(w0), 1 - alpha]


def _biquad(waveform: torch.Tensor, coefficients: Coefficients) -> torch.Tensor:
    """Filter the last axis from a zero state, output clamped to [-1, 1] (torchaudio's `lfilter`
    default). Zero-state IIR filtering of T samples is exactly a causal convolution with the first
    T samples of the impulse response: done by FFT, so gradients flow without a per-sample loop."""
    from scipy.signal import lfilter  # scipy comes with pyloudnorm; imported here to keep imports light
    b, a = coefficients
    length = waveform.shape[-1]
    impulse = [1.0] + [0.0] * (length - 1)
    response = torch.as_tensor(lfilter(b, a, impulse), dtype=waveform.dtype, device=waveform.device)
    size = 1 << (2 * length - 1).bit_length()
    spectrum = torch.fft.rfft(waveform, size) * torch.fft.rfft(response, size)
    return torch.fft.irfft(spectrum, size)[..., :length].clamp(-1, 1)


def basic_loudness(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Simplified, gradient-friendly loudness (dB) of `waveform` [..., C, T] per 400 ms gate
    (75 % overlap): K-weighting, channel-weighted gate energy, no gating thresholds. Returns [..., G]."""
    if waveform.size(-2) > 5:
        raise ValueError(f"basic_loudness supports up to 5 channels, got {waveform.size(-2)}.")
    eps = torch.finfo(torch.float32).eps
    gate_samples = int(round(0.4 * sample_rate))
    step = int(round(gate_samples * (1 - 0.75)))
    if waveform.shape[-1] < gate_samples:
        raise ValueError(f"basic_loudness needs at least 0.4 s of audio ({gate_samples} samples), "
                         f"got {waveform.shape[-1]}.")
    # K-weighting: a high-shelf boost then a high-pass, as ITU-R BS.1770.
    waveform = _biquad(waveform, _treble_biquad(sample_rate, 4.0, 1500.0, 1 / math.sqrt(2)))
    waveform = _biquad(waveform, _highpass_biquad(sample_rate, 38.0, 0.5))
    energy = torch.square(waveform).unfold(-1, gate_samples, step).mean(dim=-1)  # [..., C, G]
    weights = torch.tensor([1.0, 1.0, 1.0, 1.41, 1.41], dtype=waveform.dtype, device=waveform.device)
    weighted = torch.sum(weights[:energy.size(-2)].unsqueeze(-1) * energy, dim=-2)
    # The epsilon bounds the loudness of silence (about -70 dB) and keeps gradients finite.
    return -0.691 + 10 * torch.log10(weighted + eps)


class TLoudnessRatio(nn.Module):
    """Loudness of `out_sig - ref_sig` relative to `ref_sig`, per time chunk, softmax-weighted.

    Args:
        sample_rate: Sample rate of the signals.
        segment: Chunk duration, in seconds (at least the 0.4 s loudness gate).
        overlap: Overlap between chunks (0.5 = 50 %).
    """

    def __init__(self, sample_rate: int = 16000, segment: float = 0.5, overlap: float = 0.5):
        super().__init__()
        self.sample_rate = sample_rate
        self.segment = segment
        self.overlap = overlap

    def _ratio(self, out_sig: torch.Tensor, ref_sig: torch.Tensor, batch: int) -> torch.Tensor:
        frame = int(self.segment * self.sample_rate)
        stride = int(frame * (1 - self.overlap))
        gt = _unfold(ref_sig, frame, stride).reshape(-1, 1, frame)
        est = _unfold(out_sig, frame, stride).reshape(-1, 1, frame)
        l_noise = basic_loudness(est - gt, self.sample_rate)
        l_ref = basic_loudness(gt, self.sample_rate)
        return (l_noise - l_ref).reshape(-1, batch)

    @staticmethod
    def _check(out_sig: torch.Tensor, ref_sig: torch.Tensor) -> None:
        if out_sig.shape != ref_sig.shape or ref_sig.dim() != 3 or ref_sig.shape[1] != 1:
            raise ValueError(f"Expected mono signals [B, 1, T] of the same shape, got {tuple(out_sig.shape)} "
                             f"and {tuple(ref_sig.shape)}.")

    def forward(self, out_sig: torch.Tensor, ref_sig: torch.Tensor) -> torch.Tensor:
        self._check(out_sig, ref_sig)
        l_ratio = self._ratio(out_sig, ref_sig, ref_sig.shape[0])
        return (torch.softmax(l_ratio, dim=0) * l_ratio).sum()


class TFLoudnessRatio(TLoudnessRatio):
    """`TLoudnessRatio` per frequency band (mel-spaced bands from `julius.SplitBands`).

    Args:
        sample_rate: Sample rate of the signals.
        segment: Chunk duration, in seconds (at least the 0.4 s loudness gate).
        overlap: Overlap between chunks (0.5 = 50 %).
        n_bands: Number of bands; 0 measures the whole band.
        clip_min: Kept for AudioCraft API compatibility (unused there too).
        temperature: Softmax temperature of the chunk weighting.
    """

    def __init__(self, sample_rate: int = 16000, segment: float = 0.5, overlap: float = 0.5,
                 n_bands: int = 0, clip_min: float = -100, temperature: float = 1.0):
        super().__init__(sample_rate, segment, overlap)
        self.n_bands = n_bands
        self.clip_min = clip_min
        self.temperature = temperature
        self.filter = julius.SplitBands(sample_rate=sample_rate, n_bands=n_bands) if n_bands > 0 else None

    def forward(self, out_sig: torch.Tensor, ref_sig: torch.Tensor) -> torch.Tensor:
        self._check(out_sig, ref_sig)
        B = ref_sig.shape[0]
        if self.filter is not None:
            # SplitBands gives [n_bands, B, 1, T]: one mono signal per (band, item).
            ref_sig = self.filter(ref_sig).reshape(B * self.n_bands, 1, -1)
            out_sig = self.filter(out_sig).reshape(B * self.n_bands, 1, -1)
        l_ratio = self._ratio(out_sig, ref_sig, B)
        return (torch.softmax(l_ratio / self.temperature, dim=0) * l_ratio).sum()
