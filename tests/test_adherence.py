"""The audio-only prompt-adherence checks recover tempo, drums and key of synthetic clips."""
import numpy as np
import pytest
import torch

from audiocraft.data import synth_music
from audiocraft.metrics import adherence


@pytest.fixture(scope="module")
def clips():
    # Ground truth clips the estimators never saw while they were tuned (seed 123 was used).
    return [synth_music.make_clip(seed=777, index=i, duration=6.0, sr=16000)[:2] for i in range(16)]


def test_tempo_drums_and_key_of_ground_truth_clips(clips):
    described = [(params, adherence.describe(wav, 16000)) for wav, params in clips]
    slow = [d.bpm for p, d in described if p.tempo == 'slow']
    fast = [d.bpm for p, d in described if p.tempo == 'fast']
    assert slow and fast and adherence.pair_accuracy(fast, slow) >= 0.9
    assert np.mean([abs(d.bpm - p.bpm) < 0.06 * p.bpm for p, d in described]) >= 0.7
    drums = [d.percussive_share for p, d in described if p.drums]
    no_drums = [d.percussive_share for p, d in described if not p.drums]
    assert drums and no_drums and adherence.pair_accuracy(drums, no_drums) >= 0.9
    # chance is 1/24 for tonic and mode
    assert np.mean([d.key == p.key for p, d in described]) >= 0.4


def test_noise_and_silence_have_no_tempo_key_or_drum_meaning():
    noise = torch.randn(1, 16000 * 4, generator=torch.Generator().manual_seed(0))
    described = adherence.describe(noise, 16000)
    assert described.centroid_hz > 3000 and described.key_confidence < 0.6
    assert adherence.describe(np.zeros(16000), 16000).bpm == 0.
    with pytest.raises(ValueError, match="empty"):
        adherence.describe(np.zeros(0), 16000)


def test_prompt_targets():
    assert adherence.prompt_targets("fast 140 bpm drums and bass in F# minor, energetic") == {
        'drums': True, 'tempo': 'fast', 'key': 'F# minor'}
    assert adherence.prompt_targets("a calm slow piano piece in C major") == {
        'drums': False, 'tempo': 'slow', 'key': 'C major'}
    assert adherence.prompt_targets("strings, 70 bpm")['tempo'] == 'slow'
    assert adherence.pair_accuracy([2.], [1.]) == 1. and adherence.pair_accuracy([1.], [1.]) == 0.5
