"""Evaluation metrics: relative volume mel, chroma cosine similarity, CLAP consistency."""
import math

import pytest
import torch

from audiocraft.metrics import ChromaCosineSimilarityMetric, CLAPTextConsistencyMetric, RelativeVolumeMel


def _sine(freq: float, sample_rate: int = 16000, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(sample_rate * seconds)) / sample_rate
    return torch.sin(2 * math.pi * freq * t)


def test_relative_volume_mel():
    torch.manual_seed(0)
    rvm = RelativeVolumeMel(sample_rate=16000, n_mels=40, n_fft=256, hop_length=64)
    gt = torch.randn(2, 1, 4000)
    metrics = rvm(0.9 * gt, gt)
    assert set(metrics) == {'rvm', 'rvm_0', 'rvm_1', 'rvm_2', 'rvm_3'}
    # The error is the reference scaled by 0.1: -20 dB in every active band.
    assert metrics['rvm'].item() == pytest.approx(-20., abs=0.05)
    perfect = rvm(gt, gt)
    assert perfect['rvm'].item() == pytest.approx(-25.)  # clamped at min_relative_volume
    assert rvm(torch.zeros_like(gt), gt)['rvm'].item() == pytest.approx(0., abs=0.05)
    with pytest.raises(ValueError, match="equal shape"):
        rvm(gt[..., :100], gt)


def test_chroma_cosine_similarity():
    metric = ChromaCosineSimilarityMetric(sample_rate=16000, n_chroma=12, radix2_exp=10, argmax=False)
    a4 = _sine(440.)[None, None].repeat(2, 1, 1)
    sizes = torch.tensor([16000, 8000])
    rates = torch.tensor([16000, 16000])
    metric.update(a4, a4, sizes, rates)
    assert metric.compute() == pytest.approx(1.0, abs=1e-5)
    assert metric.weight.item() == math.ceil(16000 / 256) + math.ceil(8000 / 256)

    metric.reset()
    c5 = _sine(523.25)[None, None].repeat(2, 1, 1)
    metric.update(c5, a4, sizes, rates)
    assert metric.compute() < 0.5  # different pitch class

    metric.reset()
    stereo_32k = _sine(440., sample_rate=32000)[None, None].repeat(1, 2, 1)
    metric.update(stereo_32k, stereo_32k, torch.tensor([32000]), torch.tensor([32000]))
    assert metric.compute() == pytest.approx(1.0, abs=1e-5)
    assert metric.weight.item() == math.ceil(16000 / 256)  # lengths converted to the chroma rate

    with pytest.raises(ValueError, match="mismatch"):
        metric.update(a4, a4[..., :100], sizes, rates)
    metric.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()


def test_clap_metric_needs_a_checkpoint(tmp_path):
    # laion_clap is not needed (tests/test_metrics_clap.py): a missing checkpoint says where to get one.
    with pytest.raises(FileNotFoundError, match="CLAP checkpoint.*METRICS.md"):
        CLAPTextConsistencyMetric(tmp_path / "clap.pt")
