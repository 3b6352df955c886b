"""Random audio and a file writer for tests (no torchaudio needed)."""
from pathlib import Path

import torch


def get_white_noise(chs: int = 1, num_frames: int = 1) -> torch.Tensor:
    """Gaussian noise [chs, num_frames]."""
    return torch.randn(chs, num_frames)


def get_batch_white_noise(bs: int = 1, chs: int = 1, num_frames: int = 1) -> torch.Tensor:
    """Gaussian noise [bs, chs, num_frames]."""
    return torch.randn(bs, chs, num_frames)


def save_wav(path: str, wav: torch.Tensor, sample_rate: int) -> None:
    """Write `wav` [C, T] as is (no normalisation) to `path`, the format taken from its suffix.

    '.wav' is 16-bit PCM, '.mp3' 320 kbps; other suffixes (.flac, .ogg...) use the container's default codec.
    """
    from audiocraft.data.audio import audio_write
    fp = Path(path)
    fmt = fp.suffix.lstrip('.') or 'wav'
    # Written unscaled; values outside [-1, 1] are clipped, like any integer PCM writer does.
    audio_write(fp.with_suffix(''), wav.clamp(-1, 1), sample_rate, format=fmt, strategy='none',
                log_clipping=False, add_suffix=True)
