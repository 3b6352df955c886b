"""Synthesize the tiny example dataset (5 clips of 3 s, 32 kHz mono mp3 + metadata JSON).

Run from the repository root, then rebuild the manifest:

    python dataset/example/make_example.py
    python -m audiocraft.data.audio_dataset dataset/example egs/example/data.jsonl
"""
import json
import math
from pathlib import Path
import typing as tp

import torch

from audiocraft.data.audio import audio_write

SAMPLE_RATE = 32000
DURATION = 3.0
HERE = Path(__file__).parent


def _note(freq: float, start: float, length: float, t: torch.Tensor, decay: float = 3.) -> torch.Tensor:
    """A plucked note: a few harmonics with an exponential decay, active on [start, start + length)."""
    local = t - start
    active = (local >= 0) & (local < length)
    env = torch.exp(-decay * local.clamp(min=0)) * active
    tone = sum(torch.sin(2 * math.pi * freq * h * t) / h for h in (1, 2, 3))
    return env * tone


def _midi(note: int) -> float:
    return 440. * 2 ** ((note - 69) / 12)


def chords(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    progression = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]  # C Am F G
    out = torch.zeros_like(t)
    for i, chord in enumerate(progression):
        for n in chord:
            out += _note(_midi(n), i * 0.75, 0.75, t, decay=1.5)
    return out


def arpeggio(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    notes = [69, 72, 76, 81, 76, 72] * 3  # A minor
    step = DURATION / len(notes)
    return sum(_note(_midi(n), i * step, step * 1.5, t, decay=6.) for i, n in enumerate(notes))


def drums(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    bpm = 120
    beat = 60 / bpm
    out = torch.zeros_like(t)
    noise = torch.randn(t.shape, generator=g)
    for i in range(int(DURATION / beat * 2)):
        start = i * beat / 2
        local = (t - start).clamp(min=0) * (t >= start)
        if i % 2 == 0:  # kick: falling sine
            out += torch.sin(2 * math.pi * (50 + 100 * torch.exp(-30 * local)) * local) * torch.exp(-12 * local)
        out += 0.3 * noise * torch.exp(-60 * local) * (t >= start)  # hi-hat
    return out


def bass(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    notes = [40, 40, 43, 45, 40, 38, 36, 38]  # E minor groove
    step = DURATION / len(notes)
    return sum(_note(_midi(n), i * step, step, t, decay=4.) for i, n in enumerate(notes))


def pad(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    freqs = [_midi(n) for n in (62, 66, 69, 73)]  # D major 7
    lfo = 0.6 + 0.4 * torch.sin(2 * math.pi * 0.5 * t)
    detune = sum(torch.sin(2 * math.pi * f * t) + torch.sin(2 * math.pi * f * 1.003 * t) for f in freqs)
    fade = torch.clamp(t / 0.5, max=1.) * torch.clamp((DURATION - t) / 0.5, max=1.)
    return lfo * detune * fade


CLIPS: tp.List[tp.Tuple[str, tp.Callable, dict]] = [
    ('chords_1', chords, dict(title="Four Chords", key="C", bpm=80, genre="pop", moods=["happy", "bright"],
                              instrument="Piano", description="Bright piano chords in C major, pop progression.")),
    ('arpeggio_2', arpeggio, dict(title="Minor Steps", key="A minor", bpm=120, genre="electronic",
                                  moods=["mysterious"], instrument="Synth",
                                  description="A plucked synth arpeggio in A minor.")),
    ('drums_3', drums, dict(title="Straight Beat", key="", bpm=120, genre="rock", moods=["energetic"],
                            instrument="Drums", description="A simple kick and hi-hat drum beat at 120 bpm.")),
    ('bass_4', bass, dict(title="Low Groove", key="E minor", bpm=100, genre="funk", moods=["groovy", "dark"],
                          instrument="Bass", description="A plucked bass line grooving in E minor.")),
    ('pad_5', pad, dict(title="Slow Air", key="D", bpm=60, genre="ambient", moods=["calm", "dreamy"],
                        instrument="Synth", description="A calm, slowly pulsing ambient synth pad.")),
]


def main() -> None:
    t = torch.arange(int(SAMPLE_RATE * DURATION)) / SAMPLE_RATE
    for index, (name, fn, info) in enumerate(CLIPS):
        g = torch.Generator().manual_seed(index)
        wav = fn(t, g)
        wav = 0.5 * wav / wav.abs().max()
        audio_write(HERE / name, wav[None], SAMPLE_RATE, format='mp3', mp3_rate=64, strategy='peak')
        meta = dict(info, artist="AudioCraft examples", name=name, keywords=info['moods'],
                    sample_rate=SAMPLE_RATE, file_extension="mp3", duration=DURATION)
        with open(HERE / f"{name}.json", "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")


if __name__ == '__main__':
    main()
