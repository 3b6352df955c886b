"""The procedural music data set: deterministic for a seed, captions that say what is played."""
import json
import re

import numpy as np

from audiocraft.data import synth_music


def test_clips_are_deterministic_for_a_seed():
    wav_a, params_a, caption_a = synth_music.make_clip(seed=3, index=7, duration=2.0, sr=16000)
    wav_b, params_b, caption_b = synth_music.make_clip(seed=3, index=7, duration=2.0, sr=16000)
    assert np.array_equal(wav_a, wav_b) and params_a == params_b and caption_a == caption_b
    wav_c, _, _ = synth_music.make_clip(seed=4, index=7, duration=2.0, sr=16000)
    assert not np.array_equal(wav_a, wav_c)
    assert wav_a.shape == (32000,) and wav_a.dtype == np.float32 and 0.5 < np.abs(wav_a).max() <= 0.71


def test_captions_cover_tempo_key_instruments_and_moods():
    rng = np.random.default_rng(0)
    for _ in range(50):
        params = synth_music.sample_params(rng)
        caption = synth_music.make_caption(params, rng)
        assert f"in {params.key}" in caption
        assert params.tempo in caption  # the word, always; "<bpm> bpm" half of the time
        assert ('drums' in caption) == params.drums
        assert all(mood in caption for mood in params.moods)
        words = set(re.findall(r"[^\s,]+", caption.lower()))
        assert words <= set(synth_music.VOCABULARY) | {'#'} | {w for w in words if w.isdigit()}


def test_write_dataset_is_reproducible(tmp_path):
    sizes = synth_music.write_dataset(tmp_path / 'a', num_samples=4, seed=1, duration=1.0, valid_fraction=0.25)
    synth_music.write_dataset(tmp_path / 'b', num_samples=4, seed=1, duration=1.0, valid_fraction=0.25)
    assert sizes == {'train': 3, 'valid': 1}
    for name in ('synth_1_00000.wav', 'synth_1_00003.json'):
        assert (tmp_path / 'a' / 'audio' / name).read_bytes() == (tmp_path / 'b' / 'audio' / name).read_bytes()
    meta = json.loads((tmp_path / 'a' / 'audio' / 'synth_1_00002.json').read_text())
    assert {'description', 'key', 'bpm', 'moods'} <= set(meta)
    lines = (tmp_path / 'a' / 'egs' / 'train' / 'data.jsonl').read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])['sample_rate'] == 16000


def test_some_clips_have_no_drums():
    rng = np.random.default_rng(1)
    drums = [synth_music.sample_params(rng).drums for _ in range(100)]
    assert 20 < sum(drums) < 80
