"""Waveform utilities: channel and sample-rate conversion, normalisation, PCM conversion."""
import logging
import sys
import typing as tp

import numpy as np
import torch

from .resample import Resampler, ResamplerCache

logger = logging.getLogger(__name__)


def convert_audio_channels(wav: torch.Tensor, channels: int = 2) -> torch.Tensor:
    """Convert `wav` [..., C, T] to `channels` channels.

    Mono to many duplicates the channel; many to mono averages; more to fewer keeps the
    first channels. Fewer (but not one) to more is an error.
    """
    if wav.dim() < 2:
        raise ValueError(f"Expected a wav of shape [..., C, T], got {tuple(wav.shape)}.")
    *shape, src_channels, length = wav.shape
    if src_channels == channels:
        pass
    elif channels == 1:
        wav = wav.mean(dim=-2, keepdim=True)
    elif src_channels == 1:
        wav = wav.expand(*shape, channels, length)
    elif src_channels >= channels:
        wav = wav[..., :channels, :]
    else:
        raise ValueError(f"The audio has {src_channels} channels, fewer than the {channels} requested, "
                         "and is not mono: cannot convert.")
    return wav


def convert_audio(wav: torch.Tensor, from_rate: float, to_rate: float, to_channels: int,
                  resamplers: tp.Optional[ResamplerCache] = None) -> torch.Tensor:
    """Resample `wav` [..., C, T] from `from_rate` to `to_rate` (band-limited, as julius) and set its channels.

    Pass the `resamplers` cache of the calling object to reuse filters across calls.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"Sample rates must be positive, got {from_rate} and {to_rate}.")
    if int(from_rate) != int(to_rate):
        resample = resamplers.get(int(from_rate), int(to_rate)) if resamplers is not None else \
            Resampler(int(from_rate), int(to_rate))
        wav = resample(wav)
    return convert_audio_channels(wav, to_channels)


def integrated_loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Gated integrated loudness (ITU-R BS.1770-4) of `wav` [C, T] in LUFS; at least 400 ms of audio."""
    import pyloudnorm  # scipy-based: imported here so that `import audiocraft` stays light

    if wav.dim() != 2:
        raise ValueError(f"Expected a wav of shape [C, T], got {tuple(wav.shape)}.")
    samples = wav.detach().to(torch.float64).cpu().numpy().T
    loudness = pyloudnorm.Meter(int(sample_rate)).integrated_loudness(np.ascontiguousarray(samples))
    return float(loudness)


def normalize_loudness(wav: torch.Tensor, sample_rate: int, loudness_headroom_db: float = 14,
                       loudness_compressor: bool = False, energy_floor: float = 2e-3) -> torch.Tensor:
    """Scale `wav` [C, T] to -`loudness_headroom_db` LUFS (ITU-R BS.1770-4 gated loudness, via pyloudnorm).

    Near-silent inputs (RMS below `energy_floor`) are returned unchanged. With
    `loudness_compressor`, a tanh soft-clips the result.
    """
    energy = wav.pow(2).mean().sqrt().item()
    if energy < energy_floor:
        return wav
    # The BS.1770 gating block is 400 ms: measure shorter clips on a repetition of themselves.
    min_length = int(0.4 * sample_rate) + 1
    measured = wav if wav.shape[-1] >= min_length else \
        wav.repeat(*([1] * (wav.dim() - 1)), -(-min_length // wav.shape[-1]))
    input_loudness_db = integrated_loudness(measured, sample_rate)
    delta_loudness = -loudness_headroom_db - input_loudness_db
    gain = 10.0 ** (delta_loudness / 20.0)
    output = gain * wav
    if loudness_compressor:
        output = torch.tanh(output)
    if not output.isfinite().all():
        raise RuntimeError(f"Loudness normalisation produced non-finite values (input loudness "
                           f"{input_loudness_db} dB, RMS {energy}).")
    return output


def _clip_wav(wav: torch.Tensor, log_clipping: bool = False, stem_name: tp.Optional[str] = None) -> torch.Tensor:
    """Clamp `wav` to [-1, 1] in place (as AudioCraft does) and return it; optionally report clipping."""
    max_scale = wav.abs().max()
    if log_clipping and max_scale > 1:
        clamp_prob = (wav.abs() > 1).float().mean().item()
        print(f"CLIPPING {stem_name or ''} happening with proba (a bit of clipping is okay):",
              clamp_prob, "maximum scale: ", max_scale.item(), file=sys.stderr)
    return wav.clamp_(-1, 1)


def normalize_audio(wav: torch.Tensor, normalize: bool = True, strategy: str = 'peak',
                    peak_clip_headroom_db: float = 1, rms_headroom_db: float = 18,
                    loudness_headroom_db: float = 14, loudness_compressor: bool = False,
                    log_clipping: bool = False, sample_rate: tp.Optional[int] = None,
                    stem_name: tp.Optional[str] = None) -> torch.Tensor:
    """Normalise `wav` [C, T] with one strategy.

    'peak': peak at -`peak_clip_headroom_db` dB (only attenuates unless `normalize`);
    'clip': clamp at that level; 'rms': RMS of the mono mix at -`rms_headroom_db` dB, then
    clip; 'loudness': -`loudness_headroom_db` LUFS, then clip (needs `sample_rate`);
    'none' / '': unchanged (values must be within [-1, 1]).
    """
    scale_peak = 10 ** (-peak_clip_headroom_db / 20)
    scale_rms = 10 ** (-rms_headroom_db / 20)
    if strategy == 'peak':
        peak = wav.abs().max()
        if peak > 0:
            rescaling = scale_peak / peak
            if normalize or rescaling < 1:
                wav = wav * rescaling
    elif strategy == 'clip':
        wav = wav.clamp(-scale_peak, scale_peak)
    elif strategy == 'rms':
        mono = wav.mean(dim=0)
        rms = mono.pow(2).mean().sqrt()
        if rms > 0:
            rescaling = scale_rms / rms
            if normalize or rescaling < 1:
                wav = wav * rescaling
        wav = _clip_wav(wav.clone(), log_clipping=log_clipping, stem_name=stem_name)
    elif strategy == 'loudness':
        if sample_rate is None:
            raise ValueError("Loudness normalisation needs the sample rate.")
        wav = normalize_loudness(wav, sample_rate, loudness_headroom_db, loudness_compressor)
        wav = _clip_wav(wav.clone(), log_clipping=log_clipping, stem_name=stem_name)
    elif strategy in ('', 'none', None):
        if wav.abs().max() > 1:
            raise ValueError("With strategy 'none' the wav must already be within [-1, 1]; "
                             "pick 'peak', 'clip', 'rms' or 'loudness'.")
    else:
        raise ValueError(f"Unknown normalisation strategy '{strategy}': use peak, clip, rms, loudness or none.")
    return wav


def f32_pcm(wav: torch.Tensor) -> torch.Tensor:
    """Float waveform in [-1, 1] from float, int16 or int32 PCM."""
    if wav.dtype.is_floating_point:
        return wav
    if wav.dtype == torch.int16:
        return wav.float() / 2 ** 15
    if wav.dtype == torch.int32:
        return wav.float() / 2 ** 31
    raise ValueError(f"Unsupported wav dtype: {wav.dtype}")


def i16_pcm(wav: torch.Tensor) -> torch.Tensor:
    """int16 PCM from a float waveform in [-1, 1] (or int16, returned as is)."""
    if wav.dtype.is_floating_point:
        if wav.abs().max() > 1:
            raise ValueError("Float wav must be within [-1, 1] to convert to int16; normalise it first.")
        candidate = (wav * 2 ** 15).round()
        if candidate.max() >= 2 ** 15:  # +1.0 does not fit: use the symmetric scale instead
            candidate = (wav * (2 ** 15 - 1)).round()
        return candidate.short()
    if wav.dtype != torch.int16:
        raise ValueError(f"Unsupported wav dtype for int16 conversion: {wav.dtype}")
    return wav
