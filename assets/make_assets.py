"""Synthesize the example audio the docs use: `melody.wav` (a 3 s melody for melody models)
and `prompt.wav` (a 2 s piano-like phrase to continue). 16 kHz mono, 16-bit: small files.

Run from the repository root: `python assets/make_assets.py`. The output is deterministic.
"""
import math
from pathlib import Path
import typing as tp

import torch

from audiocraft.data.audio import audio_write

SAMPLE_RATE = 16000
HERE = Path(__file__).parent


def _midi(note: int) -> float:
    return 440. * 2 ** ((note - 69) / 12)


def _notes(notes: tp.Sequence[int], note_length: float, decay: float) -> torch.Tensor:
    """Plucked notes one after the other: a few harmonics with an exponential decay each."""
    t = torch.arange(int(note_length * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = torch.exp(-decay * t) * (1 - torch.exp(-t * 400))  # soft attack avoids clicks
    parts = []
    for note in notes:
        tone = sum(torch.sin(2 * math.pi * _midi(note) * h * t) / h ** 2 for h in (1, 2, 3, 4))
        parts.append(envelope * tone)
    return torch.cat(parts)


def main() -> None:
    """Write assets/melody.wav and assets/prompt.wav."""
    # "Ode to Joy" opening, 12 notes of 0.25 s.
    melody = _notes([64, 64, 65, 67, 67, 65, 64, 62, 60, 60, 62, 64], 0.25, decay=4.)
    # A C major arpeggio up and down, 8 notes of 0.25 s, with a bass note under it.
    arpeggio = _notes([60, 64, 67, 72, 76, 72, 67, 64], 0.25, decay=6.)
    arpeggio = arpeggio + 0.6 * _notes([36], 2.0, decay=1.)
    for name, wav in (('melody', melody), ('prompt', arpeggio)):
        path = audio_write(HERE / name, wav[None], SAMPLE_RATE, strategy='peak')
        print(path)


if __name__ == '__main__':
    main()
