"""Reconstruction losses: SI-SNR, mel spectrogram losses, STFT losses."""
import math

import pytest
import torch

from audiocraft.losses import (
    SISNR,
    LogSTFTMagnitudeLoss,
    MelSpectrogramL1Loss,
    MRSTFTLoss,
    MultiScaleMelSpectrogramLoss,
    SpectralConvergenceLoss,
    STFTLoss,
)
from audiocraft.losses.specloss import MelSpectrogramWrapper


def _audio(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _sisnr_reference(est: torch.Tensor, ref: torch.Tensor) -> float:
    """Textbook SI-SNR (dB) of one mono signal, no epsilon."""
    est = est - est.mean()
    ref = ref - ref.mean()
    proj = (est @ ref) / (ref @ ref) * ref
    noise = est - proj
    return 10 * math.log10(float(proj @ proj) / float(noise @ noise))


def test_sisnr_matches_textbook_formula():
    ref = _audio(2, 1, 1600)
    est = ref + 0.3 * _audio(2, 1, 1600, seed=1)
    loss = SISNR(sample_rate=1600, segment=None)(est, ref)
    expected = -sum(_sisnr_reference(est[b, 0], ref[b, 0]) for b in range(2)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-3)
    assert 5 < -loss.item() < 20  # noise at about -10 dB


def test_sisnr_is_scale_invariant_and_chunked():
    ref = _audio(1, 2, 3200)
    est = ref + 0.1 * _audio(1, 2, 3200, seed=2)
    metric = SISNR(sample_rate=1000, segment=1.0, overlap=0.5)
    assert metric(3 * est, ref).item() == pytest.approx(metric(est, ref).item(), abs=1e-3)
    # One segment covering the whole signal is the unsegmented metric.
    whole = SISNR(sample_rate=3200, segment=1.0, overlap=0.)(est, ref)
    assert whole.item() == pytest.approx(SISNR(segment=None)(est, ref).item(), abs=1e-4)
    # Identical signals: very good (very negative) loss.
    assert metric(ref, ref).item() < -60


def test_sisnr_rejects_bad_shapes():
    with pytest.raises(ValueError, match="SISNR"):
        SISNR()(torch.zeros(1, 1, 10), torch.zeros(1, 1, 11))
    with pytest.raises(ValueError, match="SISNR"):
        SISNR()(torch.zeros(1, 10), torch.zeros(1, 10))


def test_mel_wrapper_frames_and_mel_l1():
    x = _audio(2, 1, 1000)
    wrapper = MelSpectrogramWrapper(n_fft=256, hop_length=64, win_length=256, n_mels=20, sample_rate=8000)
    assert wrapper(x).shape == (2, 20, math.ceil(1000 / 64))
    assert MelSpectrogramWrapper(n_fft=256, hop_length=64, n_mels=20, sample_rate=8000)(_audio(2, 2, 640)).shape \
        == (2, 40, 10)
    loss = MelSpectrogramL1Loss(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=20)
    assert loss(x, x).item() == 0.
    y = x.clone().requires_grad_()
    value = loss(y, 0.5 * x)
    # Log10 mel of x vs x / 2: power / 4, so about log10(4) away wherever the floor is negligible.
    assert 0.4 < value.item() <= math.log10(4) + 1e-4
    value.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_multiscale_mel_loss():
    x = _audio(1, 1, 2048)
    y = _audio(1, 1, 2048, seed=3)
    plain = MultiScaleMelSpectrogramLoss(sample_rate=16000, range_start=6, range_end=8, n_mels=16)
    assert plain(x, x).item() == 0.
    assert plain.alphas == pytest.approx([math.sqrt(63), math.sqrt(127)])
    normalized = MultiScaleMelSpectrogramLoss(sample_rate=16000, range_start=6, range_end=8, n_mels=16,
                                              normalized=True, alphas=False)
    assert normalized.total == 4
    unnormalized = MultiScaleMelSpectrogramLoss(sample_rate=16000, range_start=6, range_end=8, n_mels=16,
                                                normalized=False, alphas=False)
    # normalized=True both normalizes the STFT and divides the loss, so values differ but stay positive.
    assert normalized(x, y).item() > 0 and unnormalized(x, y).item() > normalized(x, y).item()
    with pytest.raises(ValueError, match="range_end"):
        MultiScaleMelSpectrogramLoss(sample_rate=16000, range_start=8, range_end=8)


def test_stft_component_losses():
    y_mag = torch.rand(2, 5, 1, 7) + 0.5
    assert SpectralConvergenceLoss()(torch.zeros_like(y_mag), y_mag).item() == pytest.approx(1.0, abs=1e-6)
    assert SpectralConvergenceLoss()(y_mag, y_mag).item() == 0.
    assert LogSTFTMagnitudeLoss()(math.e * y_mag, y_mag).item() == pytest.approx(1.0, abs=1e-5)


def test_stft_and_mrstft_losses():
    x = _audio(2, 1, 2000)
    y = _audio(2, 1, 2000, seed=4)
    single = STFTLoss(n_fft=256, hop_length=64, win_length=128, factor_sc=0.5, factor_mag=0.5)
    assert single(x, x).item() == pytest.approx(0., abs=1e-6)
    multi = MRSTFTLoss(n_ffts=[256, 128], hop_lengths=[64, 32], win_lengths=[128, 64], factor_sc=0.5, factor_mag=0.5)
    assert multi(x, x).item() == pytest.approx(0., abs=1e-6)
    other = STFTLoss(n_fft=128, hop_length=32, win_length=64, factor_sc=0.5, factor_mag=0.5)
    assert multi(x, y).item() == pytest.approx((single(x, y).item() + other(x, y).item()) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="same length"):
        MRSTFTLoss(n_ffts=[256], hop_lengths=[64, 32], win_lengths=[128])
