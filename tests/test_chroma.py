"""Chroma filter bank and extractor."""
import math

import numpy as np
import pytest
import torch

from audiocraft.modules.chroma import ChromaExtractor, chroma_filter_bank

# Reference values computed with librosa.filters.chroma(sr, n_fft, tuning=0, n_chroma) (librosa 0.11),
# the filter bank AudioCraft's melody checkpoints were trained with.
LIBROSA_ROW_SUMS_32K_16384 = [
    318.450101, 321.226018, 327.773526, 334.178104, 340.416776, 346.497547, 352.386788, 358.08506,
    363.616534, 368.942834, 373.529802, 354.839735]
LIBROSA_COLUMNS_32K_16384 = {  # column index -> 12 values
    1: [2e-05, 1.93e-05, 1.81e-05, 1.65e-05, 1.47e-05, 1.27e-05, 1.38e-05, 1.58e-05, 1.75e-05, 1.89e-05,
        1.98e-05, 2.02e-05],
    10: [1.82e-05, 0.0008006, 0.0081117, 0.0189137, 0.0101482, 0.001253, 3.56e-05, 2e-07, 0.0, 0.0, 0.0, 1e-07],
    100: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0002962, 0.0937498, 0.5435417, 0.0577188, 0.0001123, 0.0, 0.0],
    441: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.1e-06, 0.0056119, 0.5127263, 0.8579915, 0.0262968, 1.48e-05],
    1000: [0.0498035, 5.6e-05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-07, 0.0013205, 0.2417817, 0.8108315],
    4000: [0.0169961, 1.91e-05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0004506, 0.0825109, 0.2767061],
}
LIBROSA_ROW_SUMS_16K_1000_24 = [
    14.192352, 14.448746, 14.674367, 14.931383, 15.111923, 15.323312, 15.507029, 15.764409, 16.017382,
    16.392817, 16.607822, 16.66709, 17.006586, 17.315706, 17.370239, 17.719845, 17.873513, 18.151136,
    18.318174, 18.574931, 18.74647, 18.949107, 18.169678, 14.743984]


def test_filter_bank_matches_librosa():
    fb = chroma_filter_bank(32000, 16384, n_chroma=12)
    assert fb.shape == (12, 8193) and fb.dtype == np.float32
    np.testing.assert_allclose(fb.astype(np.float64).sum(1), LIBROSA_ROW_SUMS_32K_16384, atol=2e-4)
    for col, values in LIBROSA_COLUMNS_32K_16384.items():
        np.testing.assert_allclose(fb[:, col], values, atol=1e-7)
    fb24 = chroma_filter_bank(16000, 1000, n_chroma=24)
    assert fb24.shape == (24, 501)
    np.testing.assert_allclose(fb24.astype(np.float64).sum(1), LIBROSA_ROW_SUMS_16K_1000_24, atol=2e-5)


def test_filter_bank_rejects_bad_sizes():
    with pytest.raises(ValueError):
        chroma_filter_bank(32000, 0)


def _tone(freq: float, sr: int, seconds: float) -> torch.Tensor:
    t = torch.arange(int(sr * seconds)) / sr
    return 0.5 * torch.sin(2 * math.pi * freq * t)


def test_extractor_shapes_and_pitch_class():
    sr = 16000
    extractor = ChromaExtractor(sr, radix2_exp=11)
    assert (extractor.winlen, extractor.nfft, extractor.winhop) == (2048, 2048, 512)
    wav = torch.stack([_tone(440., sr, 1.), _tone(261.63, sr, 1.)])[:, None]  # A4 and C4
    chroma = extractor(wav)
    assert chroma.shape == (2, extractor.num_frames(sr), 12)
    assert chroma.shape[1] == sr // 512 + 1
    # Chroma starts at C (base_c): A is pitch class 9, C is 0; inf-norm puts the max at 1.
    assert (chroma[0].argmax(-1) == 9).all()
    assert (chroma[1].argmax(-1) == 0).all()
    assert torch.allclose(chroma.max(-1).values, torch.ones(2, chroma.shape[1]))
    # [B, T] input works too.
    assert torch.equal(extractor(wav[:, 0]), chroma)


def test_extractor_argmax_and_short_inputs():
    extractor = ChromaExtractor(32000, radix2_exp=14, argmax=True)
    one_hot = extractor(_tone(440., 32000, 0.5)[None, None])
    assert set(one_hot.unique().tolist()) == {0., 1.}
    assert (one_hot.sum(-1) == 1).all()
    # A 1-sample (null) condition is padded to one window: nfft / hop + 1 frames of silence,
    # whose one-hot chroma is pitch class 0.
    null = extractor(torch.zeros(2, 1, 1))
    assert null.shape == (2, 16384 // 4096 + 1, 12)
    assert (null.argmax(-1) == 0).all() and (null.sum(-1) == 1).all()
    assert extractor.num_frames(1) == null.shape[1]
    assert extractor.num_frames(32000 * 30) == 235  # MusicGen melody: 30 s segments


def test_extractor_state_and_errors():
    extractor = ChromaExtractor(32000, radix2_exp=14)
    # Checkpoints carry only the spectrogram window; the filter bank is rebuilt.
    assert list(extractor.state_dict().keys()) == ['spec.window']
    assert extractor.state_dict()['spec.window'].shape == (16384,)
    with pytest.raises(ValueError, match="mono"):
        extractor(torch.zeros(1, 2, 32000))
