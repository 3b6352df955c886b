"""Deterministic procedural music: a small captioned text-to-music data set, no downloads.

Each clip has a key, a tempo, a chord progression with a melody, an optional bass line and
optional drums, played by simply synthesised instruments (additive piano, plucked string,
saw lead, detuned strings pad, sine bass, noise-and-envelope drums). The caption is written
from the same parameters with varied wording, so a text-to-music model can learn tempo
(`slow`/`medium`/`fast`, `<N> bpm`), instruments, key (`in A minor`) and mood words.

    python -m audiocraft.data.synth_music --out dataset/synth --num-samples 1000 --seed 0

writes `<out>/audio/*.wav` with a `.json` of metadata next to each (read by `MusicDataset`)
and AudioCraft manifests `<out>/egs/{train,valid}/data.jsonl`.
"""
import argparse
from dataclasses import dataclass, asdict
import json
from pathlib import Path
import typing as tp
import wave

import numpy as np

NOTE_NAMES = ['C', 'C#', 'D', 'D#', 'E', 'F', 'F#', 'G', 'G#', 'A', 'A#', 'B']
MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10]
# Progressions as scale degrees (0 = tonic); triads are stacked thirds inside the scale.
PROGRESSIONS = {
    'major': [[0, 4, 5, 3], [0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 0, 4]],
    'minor': [[0, 5, 2, 6], [0, 3, 4, 0], [0, 3, 6, 2], [0, 5, 3, 4]],
}
# Tempo classes are kept apart (no overlap) so that "slow" and "fast" are unambiguous.
TEMPI = {'slow': (60, 80), 'medium': (92, 112), 'fast': (128, 150)}
HARMONY = ['piano', 'strings', 'pluck']
INSTRUMENT_WORDS = {'piano': 'piano', 'strings': 'strings', 'pluck': 'plucked guitar',
                    'lead': 'lead', 'bass': 'bass', 'drums': 'drums'}
# Every word a caption may use: the vocabulary of the demo model's text conditioner.
VOCABULARY = sorted(set(
    "a an and with in at of on the for tune song piece track music melody bpm tempo beat "
    "slow medium fast moderate calm energetic happy sad bright dark gentle upbeat relaxed lively "
    "piano strings plucked guitar lead synth bass drums major minor no "
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred".split()
    + [n.lower() for n in NOTE_NAMES]))


@dataclass
class ClipParams:
    """Musical parameters of one clip (what the caption describes)."""
    tonic: int
    mode: str
    bpm: int
    tempo: str
    harmony: str
    lead: bool
    bass: bool
    drums: bool
    progression: tp.List[int]

    @property
    def key(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    @property
    def instruments(self) -> tp.List[str]:
        names = [self.harmony] + (['lead'] if self.lead else []) + (['bass'] if self.bass else [])
        return names + (['drums'] if self.drums else [])

    @property
    def moods(self) -> tp.List[str]:
        moods = ['happy' if self.mode == 'major' else 'sad']
        if self.tempo != 'medium':
            moods.append('calm' if self.tempo == 'slow' else 'energetic')
        return moods


def sample_params(rng: np.random.Generator) -> ClipParams:
    """Draw the parameters of a clip; about 40% of clips have no drums."""
    tempo = str(rng.choice(list(TEMPI)))
    low, high = TEMPI[tempo]
    mode = str(rng.choice(['major', 'minor']))
    progression = PROGRESSIONS[mode][int(rng.integers(len(PROGRESSIONS[mode])))]
    return ClipParams(tonic=int(rng.integers(12)), mode=mode, bpm=int(rng.integers(low, high + 1)), tempo=tempo,
                      harmony=str(rng.choice(HARMONY)), lead=bool(rng.random() < 0.6),
                      bass=bool(rng.random() < 0.75), drums=bool(rng.random() < 0.6), progression=progression)


def _join(words: tp.List[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def make_caption(p: ClipParams, rng: np.random.Generator) -> str:
    """A caption of the parameters in one of several wordings; key and tempo are always said."""
    instruments = [INSTRUMENT_WORDS[i] for i in p.instruments]
    rng.shuffle(instruments)
    inst = _join(instruments)
    moods = list(p.moods)
    rng.shuffle(moods)
    mood = " ".join(moods)
    # The tempo word is always said (a bare "72 bpm" left a third of the captions for the small
    # LUT model to decode through number words); the bpm follows it half of the time.
    tempo = f"{p.tempo} {p.bpm} bpm" if rng.random() < 0.5 else p.tempo
    noun = str(rng.choice(['tune', 'song', 'piece', 'track']))
    templates = [
        f"{mood} {tempo} {noun} with {inst} in {p.key}",
        f"{'an' if mood[0] in 'aeiou' else 'a'} {mood} {noun} in {p.key}, {tempo}, with {inst}",
        f"{inst}, {tempo}, in {p.key}, {mood}",
        f"{tempo} {inst} in {p.key}, {mood}",
    ]
    return str(templates[int(rng.integers(len(templates)))])


def _freq(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2 ** ((np.asarray(midi, dtype=np.float64) - 69) / 12)


def _additive(f0: float, dur: float, sr: int, amps: tp.Sequence[float], decay: float, attack: float = 0.005,
              release: float = 0.05, detune: float = 0.0, vibrato: float = 0.0) -> np.ndarray:
    """Sum of harmonics (below Nyquist) under an attack / exponential decay / release envelope."""
    n = int(dur * sr)
    t = np.arange(n, dtype=np.float32) / sr
    if vibrato:
        t = t + np.float32(vibrato / 5.0) * np.sin(np.float32(2 * np.pi * 5.0) * t)  # slow vibrato on the phase
    out = np.zeros(n, dtype=np.float32)
    base = np.float32(2 * np.pi * f0 * (1 + detune)) * t
    for k, a in enumerate(amps, start=1):
        if f0 * k * (1 + detune) >= sr / 2 - 200:
            break
        partial = np.sin(base * k)
        if decay:
            partial *= np.exp(t * np.float32(-decay * k ** 0.5))
        out += np.float32(a) * partial
    t = np.arange(n, dtype=np.float32) / sr
    env = np.minimum(1.0, t / attack) * np.minimum(1.0, (dur - t) / release).clip(0, 1)
    return out * env


def play_note(instrument: str, midi: int, dur: float, sr: int) -> np.ndarray:
    """One note of a pitched instrument, `dur` seconds long."""
    f0 = float(_freq(midi))
    if instrument == 'piano':
        return _additive(f0, dur, sr, [1, .5, .3, .2, .1, .05], decay=2.5, release=0.08)
    if instrument == 'pluck':
        return _additive(f0, dur, sr, [1, .7, .5, .35, .25, .15, .1], decay=6.0, attack=0.002, release=0.03)
    if instrument == 'strings':
        amps = [1 / k for k in range(1, 9)]
        voices = [_additive(f0, dur, sr, amps, decay=0.0, attack=0.25, release=0.2, detune=d, vibrato=0.003)
                  for d in (-0.004, 0.0, 0.004)]
        return sum(voices) / 3
    if instrument == 'lead':
        return _additive(f0, dur, sr, [1 / k for k in range(1, 12)], decay=0.4, attack=0.01, release=0.04,
                         vibrato=0.002)
    if instrument == 'bass':
        return _additive(f0, dur, sr, [1, .35, .1], decay=1.0, attack=0.005, release=0.05)
    raise ValueError(f"Unknown instrument '{instrument}'; use one of piano, pluck, strings, lead, bass.")


def play_drum(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Kick (pitch-swept sine), snare (noise and tone) or closed hi-hat (high-passed noise)."""
    if kind == 'kick':
        t = np.arange(int(0.25 * sr)) / sr
        freq = 50 + 90 * np.exp(-t * 30)
        return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t * 14)
    if kind == 'snare':
        t = np.arange(int(0.2 * sr)) / sr
        noise = rng.standard_normal(len(t))
        return (0.8 * noise * np.exp(-t * 22) + 0.4 * np.sin(2 * np.pi * 185 * t) * np.exp(-t * 30))
    if kind == 'hat':
        t = np.arange(int(0.06 * sr)) / sr
        noise = np.diff(rng.standard_normal(len(t) + 1))  # first difference: a cheap high-pass
        return 0.35 * noise * np.exp(-t * 70)
    raise ValueError(f"Unknown drum '{kind}'; use kick, snare or hat.")


def _add(buffer: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    end = min(len(buffer), start + len(sound))
    if start < end:
        buffer[start:end] += gain * sound[:end - start]


def render(p: ClipParams, duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Render the clip to a mono float32 waveform peaking at about -3 dBFS."""
    n = int(duration * sr)
    out = np.zeros(n + sr)  # one second of tail room, cut at the end
    beat = 60.0 / p.bpm
    scale = MAJOR_SCALE if p.mode == 'major' else MINOR_SCALE
    root = 48 + p.tonic  # harmony around C3..B3
    n_bars = int(np.ceil(duration / (4 * beat)))

    def degree(d: int) -> int:
        return root + 12 * (d // 7) + scale[d % 7]

    # Notes repeat bar after bar: synthesise each (instrument, pitch, length) once per clip.
    cache: tp.Dict[tp.Tuple[str, int, float], np.ndarray] = {}

    def note_wav(instrument: str, midi: int, dur: float) -> np.ndarray:
        key = (instrument, midi, round(dur, 4))
        if key not in cache:
            cache[key] = play_note(instrument, midi, dur, sr)
        return cache[key]

    melody_degree = 7 + int(rng.integers(0, 5))
    for bar in range(n_bars):
        chord_root = p.progression[bar % len(p.progression)]
        chord = [degree(chord_root + i) for i in (0, 2, 4)]
        bar_start = bar * 4 * beat
        # Harmony: sustained chords for strings, struck on each beat for piano/pluck (the pulse
        # then tells the tempo even without drums).
        hits = [(0, 4)] if p.harmony == 'strings' else [(b, 1) for b in range(4)]
        for start, length in hits:
            for note in chord:
                _add(out, note_wav(p.harmony, note, length * beat), int((bar_start + start * beat) * sr), 0.22)
        if p.bass:
            # On every beat at every tempo: low-band onsets then mark the beat itself (half notes
            # at a slow tempo put the pulse at 30-40 bpm, which strings alone do not correct).
            for b in range(4):
                note = chord[0] - 12 + (7 if b == 3 else 0)
                _add(out, note_wav('bass', note, beat * 0.95), int((bar_start + b * beat) * sr), 0.5)
        if p.lead:
            # A random walk on the scale, biased to chord tones on strong beats, in eighth notes.
            steps = 8 if p.tempo != 'slow' else 4
            for s in range(steps):
                step_len = 4 * beat / steps
                melody_degree = int(np.clip(melody_degree + rng.integers(-2, 3), 5, 13))
                if s % 2 == 0:
                    melody_degree = chord_root + 7 + int(rng.choice([0, 2, 4]))
                if rng.random() < 0.85:
                    _add(out, note_wav('lead', degree(melody_degree), step_len * 0.9),
                         int((bar_start + s * step_len) * sr), 0.16)
        if p.drums:
            for eighth in range(8):
                t0 = int((bar_start + eighth * beat / 2) * sr)
                if eighth in (0, 4) or (p.tempo == 'fast' and eighth == 5):
                    _add(out, play_drum('kick', sr, rng), t0, 0.7)
                if eighth in (2, 6):
                    _add(out, play_drum('snare', sr, rng), t0, 0.45)
                # Slow grooves keep the hats on the beat: eighths would read as twice the tempo.
                if p.tempo != 'slow' or eighth % 2 == 0:
                    _add(out, play_drum('hat', sr, rng), t0, 0.5 if eighth % 2 == 0 else 0.3)
    out = out[:n]
    out *= 0.7 / max(1e-6, float(np.abs(out).max()))
    return out.astype(np.float32)


def make_clip(seed: int, index: int, duration: float, sr: int) -> tp.Tuple[np.ndarray, ClipParams, str]:
    """Clip `index` of the data set of `seed`: its own generator, so clips can be made in any order."""
    rng = np.random.default_rng([seed, index])
    params = sample_params(rng)
    caption = make_caption(params, rng)
    return render(params, duration, sr, rng), params, caption


def _write_wav(path: Path, wav: np.ndarray, sr: int) -> None:
    # The standard library's wave module: 16-bit PCM needs no audio back end.
    pcm = (np.clip(wav, -1, 1) * 32767).astype('<i2')
    with wave.open(str(path), 'wb') as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sr)
        handle.writeframes(pcm.tobytes())


def write_dataset(out: Path, num_samples: int, seed: int = 0, duration: float = 10.0, sample_rate: int = 16000,
                  valid_fraction: float = 0.05) -> tp.Dict[str, int]:
    """Write clips, their metadata and the train/valid manifests; returns the split sizes."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    audio_dir = out / 'audio'
    audio_dir.mkdir(parents=True, exist_ok=True)
    n_valid = int(round(num_samples * valid_fraction)) if num_samples > 1 else 0
    lines: tp.Dict[str, tp.List[str]] = {'train': [], 'valid': []}
    for index in range(num_samples):
        wav, params, caption = make_clip(seed, index, duration, sample_rate)
        name = f"synth_{seed}_{index:05d}"
        path = audio_dir / f"{name}.wav"
        _write_wav(path, wav, sample_rate)
        meta = {'title': name, 'artist': 'synth_music', 'key': params.key, 'bpm': params.bpm, 'genre': 'synthetic',
                'moods': params.moods, 'keywords': params.instruments, 'description': caption, 'name': name,
                'instrument': params.harmony, 'sample_rate': sample_rate, 'file_extension': 'wav',
                'duration': duration, 'params': asdict(params)}
        path.with_suffix('.json').write_text(json.dumps(meta, indent=1))
        entry = {'path': str(path), 'duration': duration, 'sample_rate': sample_rate, 'amplitude': None,
                 'weight': None, 'info_path': None}
        split = 'valid' if index >= num_samples - n_valid else 'train'
        lines[split].append(json.dumps(entry))
    for split, entries in lines.items():
        folder = out / 'egs' / split
        folder.mkdir(parents=True, exist_ok=True)
        # An empty valid split would break the solvers: fall back to the training clips.
        (folder / 'data.jsonl').write_text("\n".join(entries or lines['train']) + "\n")
    return {split: len(entries) for split, entries in lines.items()}


def main(argv: tp.Optional[tp.List[str]] = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('dataset/synth'), help="output folder")
    parser.add_argument('--num-samples', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--duration', type=float, default=10.0, help="seconds per clip")
    parser.add_argument('--sample-rate', type=int, default=16000)
    parser.add_argument('--valid-fraction', type=float, default=0.05)
    args = parser.parse_args(argv)
    sizes = write_dataset(args.out, args.num_samples, args.seed, args.duration, args.sample_rate, args.valid_fraction)
    print(f"Wrote {sizes['train']} train and {sizes['valid']} valid clips to {args.out} "
          f"(manifests in {args.out / 'egs'}).")


if __name__ == '__main__':
    main()
