"""Prompt adherence from the audio alone: tempo, drums, key and brightness of a waveform.

No model internals and no learned features, so the check can judge any generator:

- tempo: autocorrelation of a spectral-flux onset envelope, in beats per minute;
- drums: the share of spectrogram energy that is percussive (median-filter HPSS),
  since noise bursts are broadband and short while notes are narrowband and sustained;
- key: chroma correlated with the Krumhansl-Schmuckler major and minor profiles;
- brightness: the spectral centroid in Hz (register or instrument).

`describe(wav, sr)` returns all four; `prompt_targets(text)` reads the targets a prompt sets.
"""
from dataclasses import dataclass
import re
import typing as tp

import numpy as np
import torch

NOTE_NAMES = ['C', 'C#', 'D', 'D#', 'E', 'F', 'F#', 'G', 'G#', 'A', 'A#', 'B']
# Krumhansl & Kessler (1982) probe-tone profiles, tonic first.
KS_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KS_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# Tempo classes of the prompts: "slow" below, "fast" above these beats per minute.
SLOW_BELOW = 90.
FAST_ABOVE = 115.


@dataclass
class AudioDescription:
    """What the audio-only estimators hear in a clip."""
    bpm: float
    percussive_share: float
    key: str
    key_confidence: float
    centroid_hz: float

    @property
    def tonic(self) -> str:
        return self.key.split(' ')[0]

    @property
    def mode(self) -> str:
        return self.key.split(' ')[1]


def _as_mono(wav: tp.Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    x = wav.detach().cpu().float().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, dtype=np.float32)
    if x.ndim > 1:
        x = x.reshape(-1, x.shape[-1]).mean(0)
    if x.size == 0:
        raise ValueError("Cannot describe an empty waveform: pass at least a few seconds of audio.")
    return x


def magnitude(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Magnitude spectrogram [freq, frames] with a Hann window."""
    spec = torch.stft(torch.from_numpy(x), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    return spec.abs().numpy()


def _median_filter(spec: np.ndarray, size: int, axis: int) -> np.ndarray:
    pad = [(0, 0), (0, 0)]
    pad[axis] = (size // 2, size // 2)
    padded = np.pad(spec, pad, mode='reflect')
    windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=axis)
    return np.median(windows, axis=-1)


def estimate_bpm(x: np.ndarray, sr: int, min_bpm: float = 50., max_bpm: float = 200.,
                 max_hz: tp.Optional[float] = 500., ratio: float = 0.8) -> float:
    """Tempo from the autocorrelation of the spectral-flux onset envelope below `max_hz`.

    The low band holds kicks, bass and chord roots, which mark beats; hats and melodies
    often run in eighths and would double the tempo. Beat periods are scored by their
    autocorrelation plus half that of twice the period (a true beat also repeats every two
    beats). Among periods scoring within `ratio` of the best, the shortest wins: a pulse
    also correlates at every multiple of its period.
    """
    hop = 256
    spec = np.log1p(100 * magnitude(x, hop=hop))
    if max_hz is not None:
        spec = spec[:int(max_hz * 1024 / sr)]
    flux = np.maximum(np.diff(spec, axis=1), 0).sum(0)
    flux = flux - flux.mean()
    if len(flux) < 8 or not np.any(flux):
        return 0.
    acf = np.correlate(flux, flux, mode='full')[len(flux) - 1:]
    acf = acf / (acf[0] + 1e-9)
    frame_rate = sr / hop
    lags = np.arange(int(frame_rate * 60 / max_bpm), min(int(frame_rate * 60 / min_bpm) + 1, len(acf) // 2))
    if len(lags) == 0:
        return 0.
    score = acf[lags] + 0.5 * acf[2 * lags]
    # Local maxima only: the slope next to a strong peak must not win the shortest-lag rule.
    peaks = [i for i in range(len(lags)) if (i == 0 or score[i] >= score[i - 1])
             and (i == len(lags) - 1 or score[i] >= score[i + 1])]
    best = max(score[i] for i in peaks)
    chosen = min(i for i in peaks if score[i] >= ratio * best)
    # Parabolic interpolation refines the period between frames.
    i = chosen
    lag = float(lags[i])
    if 0 < i < len(lags) - 1:
        a, b, c = score[i - 1], score[i], score[i + 1]
        denom = a - 2 * b + c
        if denom < 0:
            lag += 0.5 * (a - c) / denom
    return 60. * frame_rate / lag


def percussive_share(x: np.ndarray, sr: int, min_hz: float = 3000.) -> float:
    """Share of all spectrogram energy that is percussive and above `min_hz`.

    Median-filter HPSS splits the energy; only its part above 3 kHz counts, where drums
    (noise bursts) dominate while piano or plucked attacks, also "percussive", carry little.
    """
    spec = magnitude(x, n_fft=1024, hop=256)
    harmonic = _median_filter(spec, 17, axis=1)
    percussive = _median_filter(spec, 17, axis=0)
    # Soft (Wiener-like) masks: energy shares rather than hard assignments.
    mask = percussive ** 2 / (harmonic ** 2 + percussive ** 2 + 1e-12)
    energy = spec ** 2
    high = np.arange(spec.shape[0]) * sr / 1024 >= min_hz
    return float((mask * energy)[high].sum() / (energy.sum() + 1e-12))


def chroma(x: np.ndarray, sr: int, fmin: float = 55., fmax: float = 2000.) -> np.ndarray:
    """12-bin pitch-class energy profile (C first) from STFT bins between `fmin` and `fmax`."""
    n_fft = 4096
    spec = magnitude(x, n_fft=n_fft, hop=1024) ** 2
    freqs = np.arange(spec.shape[0]) * sr / n_fft
    keep = (freqs >= fmin) & (freqs <= fmax)
    pitch = np.round(12 * np.log2(freqs[keep] / 440.) + 69).astype(int) % 12
    energy = np.sqrt(spec[keep].sum(1))  # compress: loud bass notes must not drown the rest
    out = np.zeros(12)
    np.add.at(out, pitch, energy)
    return out / (out.sum() + 1e-12)


def estimate_key(x: np.ndarray, sr: int) -> tp.Tuple[str, float]:
    """Krumhansl-Schmuckler: the key whose rotated profile best correlates with the chroma."""
    profile = chroma(x, sr)
    if np.ptp(profile) == 0:
        return "C major", 0.  # silence has no key; a flat profile would divide by zero
    best, best_r = "C major", -2.
    for mode, template in (('major', KS_MAJOR), ('minor', KS_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if r > best_r:
                best, best_r = f"{NOTE_NAMES[tonic]} {mode}", r
    return best, best_r


def spectral_centroid(x: np.ndarray, sr: int) -> float:
    """Energy-weighted mean frequency in Hz."""
    spec = magnitude(x) ** 2
    freqs = np.arange(spec.shape[0]) * sr / 1024
    return float((freqs[:, None] * spec).sum() / (spec.sum() + 1e-12))


def describe(wav: tp.Union[torch.Tensor, np.ndarray], sample_rate: int) -> AudioDescription:
    """All estimates for one clip (any shape ending in time; channels are averaged)."""
    x = _as_mono(wav)
    key, confidence = estimate_key(x, sample_rate)
    return AudioDescription(bpm=estimate_bpm(x, sample_rate), percussive_share=percussive_share(x, sample_rate),
                            key=key, key_confidence=confidence, centroid_hz=spectral_centroid(x, sample_rate))


def tempo_class(bpm: float) -> str:
    """'slow', 'medium' or 'fast' for a tempo in beats per minute."""
    return 'slow' if bpm < SLOW_BELOW else ('fast' if bpm > FAST_ABOVE else 'medium')


def prompt_targets(text: str) -> tp.Dict[str, tp.Any]:
    """Targets a prompt sets: 'tempo' (class), 'drums' (bool) and 'key' ('A minor'), when it says so."""
    lowered = text.lower()
    targets: tp.Dict[str, tp.Any] = {'drums': 'drum' in lowered}
    bpm = re.search(r"(\d+)\s*bpm", lowered)
    words = re.findall(r"[a-z]+", lowered)
    if bpm:
        targets['tempo'] = tempo_class(float(bpm.group(1)))
    else:
        for word in ('slow', 'medium', 'fast'):
            if word in words:
                targets['tempo'] = word
    key = re.search(r"\bin ([a-g]#?) (major|minor)\b", lowered)
    if key:
        targets['key'] = f"{key.group(1).upper()} {key.group(2)}"
    return targets


def pair_accuracy(values_high: tp.Sequence[float], values_low: tp.Sequence[float]) -> float:
    """Share of all (high, low) pairs ordered as expected: 0.5 is chance, 1.0 perfect separation."""
    if not values_high or not values_low:
        raise ValueError("pair_accuracy needs at least one clip on each side.")
    wins = [float(h > low) + 0.5 * float(h == low) for h in values_high for low in values_low]
    return float(np.mean(wins))
