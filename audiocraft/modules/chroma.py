"""Chroma (pitch class) features from a power spectrogram, as used for melody conditioning."""
import math
import typing as tp

import numpy as np
import torch
from torch import nn

from .spectral import Spectrogram


def chroma_filter_bank(sample_rate: int, n_fft: int, n_chroma: int = 12, tuning: float = 0.0,
                       ctroct: float = 5.0, octwidth: tp.Optional[float] = 2.0,
                       base_c: bool = True) -> np.ndarray:
    """Chroma filter bank [n_chroma, 1 + n_fft // 2] mapping STFT bins to pitch classes.

    Numerically the same bank as `librosa.filters.chroma` with its default arguments
    (which AudioCraft uses), so released melody checkpoints see the same features:
    each FFT bin is a Gaussian bump around its (fractional) pitch class, columns are
    L2-normalised, then weighted by a Gaussian over octaves centred on `ctroct`.
    """
    if n_fft <= 0 or n_chroma <= 0:
        raise ValueError(f"n_fft and n_chroma must be positive, got {n_fft} and {n_chroma}.")
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    # The DC bin gets a made-up position 1.5 octaves below bin 1, so it is broad and neutral.
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1.0]))
    dist = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    # Fold distances into [-n_chroma/2, n_chroma/2); the large offset keeps `remainder` positive.
    dist = np.remainder(dist + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * dist / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    norms = np.sqrt((np.abs(wts) ** 2).sum(axis=0, keepdims=True))
    norms[norms < np.finfo(wts.dtype).tiny] = 1.0
    wts = wts / norms
    if octwidth is not None:
        wts = wts * np.tile(np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1))
    if base_c:
        wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, :int(1 + n_fft / 2)], dtype=np.float32)


class ChromaExtractor(nn.Module):
    """Chroma features [B, T_frames, n_chroma] from a waveform [B, C, T] or [B, T].

    Args:
        sample_rate: sample rate of the input.
        n_chroma: number of pitch classes.
        radix2_exp: window length is 2 ** radix2_exp unless `winlen` is given.
        nfft, winlen, winhop: STFT parameters (defaults: winlen, winlen, winlen // 4).
        argmax: keep only the strongest pitch class per frame (one-hot output).
        norm: p-norm used to normalise each frame over pitch classes.
        device: where to put the buffers.
    """

    def __init__(self, sample_rate: int, n_chroma: int = 12, radix2_exp: int = 12,
                 nfft: tp.Optional[int] = None, winlen: tp.Optional[int] = None,
                 winhop: tp.Optional[int] = None, argmax: bool = False, norm: float = math.inf,
                 device: tp.Union[torch.device, str, None] = None):
        super().__init__()
        self.winlen = winlen or 2 ** radix2_exp
        self.nfft = nfft or self.winlen
        self.winhop = winhop or (self.winlen // 4)
        self.sample_rate = sample_rate
        self.n_chroma = n_chroma
        self.norm = norm
        self.argmax = argmax
        fbanks = torch.from_numpy(chroma_filter_bank(sample_rate, self.nfft, n_chroma=n_chroma))
        # Not persistent: checkpoints only carry the spectrogram window (`spec.window`).
        self.register_buffer('fbanks', fbanks, persistent=False)
        self.spec = Spectrogram(n_fft=self.nfft, win_length=self.winlen, hop_length=self.winhop, power=2,
                                center=True, pad=0, normalized=True)
        if device is not None:
            self.to(device)

    def num_frames(self, num_samples: int) -> int:
        """Number of chroma frames produced for an input of `num_samples` samples."""
        return max(num_samples, self.nfft) // self.winhop + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 3 and wav.shape[1] == 1:
            wav = wav[:, 0]
        if wav.dim() != 2:
            raise ValueError("ChromaExtractor expects a mono wav [B, 1, T] or [B, T], "
                             f"got shape {tuple(wav.shape)}; average channels first.")
        length = wav.shape[-1]
        if length < self.nfft:
            # Null (dropped-out) conditions are 1 sample long: pad them to one full window.
            pad = self.nfft - length
            wav = torch.nn.functional.pad(wav, (pad // 2, pad // 2 + pad % 2), 'constant', 0.)
        spec = self.spec(wav)
        raw_chroma = torch.einsum('cf,...ft->...ct', self.fbanks, spec)
        norm_chroma = torch.nn.functional.normalize(raw_chroma, p=self.norm, dim=-2, eps=1e-6)
        norm_chroma = norm_chroma.transpose(-1, -2)
        if self.argmax:
            idx = norm_chroma.argmax(-1, keepdim=True)
            norm_chroma = torch.zeros_like(norm_chroma).scatter_(-1, idx, 1.)
        return norm_chroma
