"""Spectrograms and mel filter banks in plain torch.

These modules compute what `torchaudio.transforms.Spectrogram` / `MelSpectrogram` compute, with the
same submodule and buffer names (`window`, `spectrogram.window`, `mel_scale.fb`), so state_dicts
saved with AudioCraft load unchanged. They exist so that `import audiocraft` and generation never
depend on torchaudio's compiled extension, whose wheels break whenever they are paired with a
different torch build.
"""
import math
import typing as tp

import torch
from torch import nn

WindowFn = tp.Callable[..., torch.Tensor]


class Spectrogram(nn.Module):
    """STFT of [..., T] audio as [..., freqs, frames]: complex when `power` is None, else |X| ** power.

    Args mirror torchaudio's: `pad` zero-pads both ends before the STFT, `normalized=True` divides
    by the window's L2 norm, `center` reflect-pads (`pad_mode`) by n_fft // 2 on each side.
    """

    def __init__(self, n_fft: int = 400, win_length: tp.Optional[int] = None,
                 hop_length: tp.Optional[int] = None, pad: int = 0,
                 window_fn: WindowFn = torch.hann_window, power: tp.Optional[float] = 2.0,
                 normalized: bool = False, wkwargs: tp.Optional[dict] = None, center: bool = True,
                 pad_mode: tp.Optional[str] = "reflect", onesided: bool = True) -> None:
        super().__init__()
        if n_fft <= 0:
            raise ValueError(f"n_fft must be positive, got {n_fft}.")
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.pad = pad
        self.power = power
        self.normalized = normalized
        self.center = center
        self.pad_mode = pad_mode or "reflect"
        self.onesided = onesided
        window = window_fn(self.win_length, **(wkwargs or {}))
        self.register_buffer("window", window)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.pad > 0:
            waveform = nn.functional.pad(waveform, (self.pad, self.pad), "constant")
        shape = waveform.shape
        flat = waveform.reshape(-1, shape[-1])
        spec = torch.stft(flat, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=self.center, pad_mode=self.pad_mode,
                          normalized=False, onesided=self.onesided, return_complex=True)
        spec = spec.reshape(shape[:-1] + spec.shape[-2:])
        if self.normalized:
            spec = spec / self.window.pow(2.).sum().sqrt()
        if self.power is None:
            return spec
        if self.power == 1.0:
            return spec.abs()
        return spec.abs().pow(self.power)


def hz_to_mel(freq: float) -> float:
    """HTK mel scale."""
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    """Inverse of `hz_to_mel`, on a tensor."""
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int,
                   norm: tp.Optional[str] = None) -> torch.Tensor:
    """Triangular HTK mel filters [n_freqs, n_mels] over the one-sided STFT bins.

    With `norm='slaney'` each triangle is scaled to unit area, as in torchaudio and librosa.
    """
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be None or 'slaney', got {norm!r}.")
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_points = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    freq_points = mel_to_hz(mel_points)
    widths = freq_points[1:] - freq_points[:-1]
    offsets = freq_points.unsqueeze(0) - all_freqs.unsqueeze(1)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    filters = torch.clamp(torch.min(rising, falling), min=0.0)
    if norm == "slaney":
        filters = filters * (2.0 / (freq_points[2:n_mels + 2] - freq_points[:n_mels])).unsqueeze(0)
    return filters


class MelScale(nn.Module):
    """Maps a power spectrogram [..., n_stft, frames] to [..., n_mels, frames]."""

    def __init__(self, n_mels: int = 128, sample_rate: int = 16000, f_min: float = 0.0,
                 f_max: tp.Optional[float] = None, n_stft: int = 201, norm: tp.Optional[str] = None) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.f_min = f_min
        self.f_max = f_max if f_max is not None else float(sample_rate // 2)
        if self.f_min > self.f_max:
            raise ValueError(f"f_min ({self.f_min}) must not exceed f_max ({self.f_max}).")
        self.register_buffer("fb", mel_filterbank(n_stft, self.f_min, self.f_max, n_mels, sample_rate, norm))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    """Mel power spectrogram of [..., T] audio as [..., n_mels, frames] (torchaudio's defaults)."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: tp.Optional[int] = None,
                 hop_length: tp.Optional[int] = None, f_min: float = 0.0, f_max: tp.Optional[float] = None,
                 pad: int = 0, n_mels: int = 128, window_fn: WindowFn = torch.hann_window,
                 power: float = 2.0, normalized: bool = False, wkwargs: tp.Optional[dict] = None,
                 center: bool = True, pad_mode: str = "reflect", onesided: bool = True,
                 norm: tp.Optional[str] = None) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.n_mels = n_mels
        self.spectrogram = Spectrogram(n_fft=n_fft, win_length=win_length, hop_length=hop_length, pad=pad,
                                       window_fn=window_fn, power=power, normalized=normalized,
                                       wkwargs=wkwargs, center=center, pad_mode=pad_mode, onesided=onesided)
        self.mel_scale = MelScale(n_mels, sample_rate, f_min, f_max, n_fft // 2 + 1, norm)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.mel_scale(self.spectrogram(waveform))
