"""Notebook helpers: audio players for generated samples."""
import typing as tp

import torch


def display_audio(samples: torch.Tensor, sample_rate: int) -> None:
    """Show one IPython audio player per sample of `samples` ([B, C, T] or [C, T])."""
    try:
        import IPython.display as ipd
    except ImportError as exc:
        raise ImportError("display_audio needs IPython: run it inside Jupyter, or `pip install ipython`.") from exc
    if not isinstance(samples, torch.Tensor) or samples.dim() not in (2, 3):
        shape: tp.Any = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"display_audio expects a tensor [B, C, T] or [C, T], got {shape}.")
    samples = samples.detach().float().cpu()
    if samples.dim() == 2:
        samples = samples[None]
    for audio in samples:
        ipd.display(ipd.Audio(audio.numpy(), rate=sample_rate))
