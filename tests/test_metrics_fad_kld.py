"""FAD (VGGish) and KLD (PaSST): Fréchet distance, VGGish features and layout, PaSST KL divergence."""
import importlib.util
from pathlib import Path
import sys
import types

import numpy as np
import pytest
import torch

from audiocraft.metrics.fad import FrechetAudioDistanceMetric, frechet_distance
from audiocraft.metrics.kld import PasstKLDivergenceMetric, kl_divergence
from audiocraft.metrics.passt import PasstTagger, kaldi_mel_banks, load_passt
from audiocraft.metrics import passt as passt_module, vggish as vggish_module
from audiocraft.metrics.vggish import VGGish, load_vggish, vggish_examples, vggish_log_mel

pytestmark = pytest.mark.usefixtures('single_thread')


def _gaussian_stats(seed: int, dim: int = 16, n: int = 400, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    samples = rng.normal(size=(n, dim)) @ mixing + shift
    return samples.mean(0), np.cov(samples, rowvar=False)


def _scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    linalg = pytest.importorskip('scipy.linalg')
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


def test_frechet_distance_matches_scipy():
    for seed in range(3):
        mu1, s1 = _gaussian_stats(seed)
        mu2, s2 = _gaussian_stats(seed + 10, shift=0.3)
        ours = frechet_distance(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
        assert ours == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_distance_self_zero_and_grows_with_shift():
    mu, sigma = (torch.from_numpy(a) for a in _gaussian_stats(0))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    distances = [frechet_distance(mu, sigma, *(torch.from_numpy(a) for a in _gaussian_stats(1, shift=s)))
                 for s in (0.0, 0.5, 1.0, 2.0)]
    assert distances == sorted(distances) and distances[0] < distances[-1]


def test_frechet_distance_near_singular_covariance():
    # 5 samples in 16 dimensions: rank-deficient covariances, where a general sqrtm goes complex.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(5, 16))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ours = frechet_distance(*(torch.from_numpy(x) for x in (a.mean(0), s1, b.mean(0), s2)))
    assert np.isfinite(ours) and ours > 0
    assert abs(frechet_distance(*(torch.from_numpy(x) for x in (a.mean(0), s1, a.mean(0), s1)))) < 1e-6


def _torchvggish_mel_features() -> types.ModuleType:
    """VGGish's numpy feature code as shipped by torchvggish, without its package __init__ (which
    imports resampy, not needed here)."""
    spec = importlib.util.find_spec('torchvggish')
    if spec is None or not spec.submodule_search_locations:
        pytest.skip('torchvggish is not installed')
    path = Path(list(spec.submodule_search_locations)[0]) / 'mel_features.py'
    module_spec = importlib.util.spec_from_file_location('_vggish_mel_features', path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_vggish_features_follow_the_released_recipe():
    t = torch.arange(16000 * 2) / 16000
    wav = 0.5 * torch.sin(2 * torch.pi * 1000 * t)
    log_mel = vggish_log_mel(wav.double())
    assert log_mel.shape == (1 + (32000 - 400) // 160, 64)
    assert vggish_examples(wav).shape == (2, 1, 96, 64)  # 0.96 s patches, incomplete tail dropped
    assert vggish_examples(wav[:15000]).shape[0] == 0
    mel_features = _torchvggish_mel_features()
    expected = mel_features.log_mel_spectrogram(
        wav.double().numpy(), audio_sample_rate=16000, log_offset=0.01, window_length_secs=0.025,
        hop_length_secs=0.010, num_mel_bins=64, lower_edge_hertz=125, upper_edge_hertz=7500)
    np.testing.assert_allclose(log_mel.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope='module')
def random_vggish() -> VGGish:
    torch.manual_seed(1)
    return VGGish(postprocess=False).eval()


def test_vggish_loads_torchvggish_files(tmp_path, monkeypatch, random_vggish):
    state = random_vggish.state_dict()
    assert 'features.0.weight' in state and 'embeddings.4.weight' in state  # torchvggish names
    rng = np.random.default_rng(0)
    pca = {'pca_eigen_vectors': rng.normal(size=(128, 128)), 'pca_means': rng.normal(size=(128,))}
    torch.save(pca, tmp_path / 'pca.pth')  # numpy arrays, as the released PCA file
    real_load_weights = vggish_module.load_weights
    # The network file is large: serve it from memory, the real loader reads the PCA file.
    monkeypatch.setattr(vggish_module, 'load_weights',
                        lambda path, what: state if str(path) == 'vggish.pth' else real_load_weights(path, what))
    model = load_vggish('vggish.pth', tmp_path / 'pca.pth')
    examples = vggish_examples(0.1 * torch.randn(16000))
    raw = random_vggish(examples)
    expected = (torch.from_numpy(pca['pca_eigen_vectors']).float()
                @ (raw.T - torch.from_numpy(pca['pca_means']).float()[:, None])).T
    expected = torch.round((expected.clamp(-2, 2) + 2) * 255 / 4)
    torch.testing.assert_close(model(examples), expected)
    with pytest.raises(FileNotFoundError, match="METRICS.md"):
        load_vggish(tmp_path / 'missing.pth', None, postprocess=False)
    with pytest.raises(RuntimeError, match="not a torchvggish"):
        load_vggish(tmp_path / 'pca.pth', None, postprocess=False)


def test_fad_metric_self_zero_and_grows(random_vggish):
    torch.manual_seed(0)
    rate = 16000
    t = torch.arange(rate * 3) / rate
    freqs = torch.linspace(200, 2000, 4)
    ref = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) + 0.01 * torch.randn_like(t) for f in freqs])[:, None]
    sizes, rates = torch.full((4,), rate * 3), torch.full((4,), rate)
    fad = FrechetAudioDistanceMetric(model=random_vggish)
    fad.update(ref, ref, sizes, rates)
    assert abs(fad.compute()) < 1e-6
    values = []
    for noise in (0.05, 0.3):
        fad.reset()
        fad.update(ref + noise * torch.randn_like(ref), ref, sizes, rates)
        values.append(fad.compute())
    assert 0 < values[0] < values[1]
    fad.reset()
    with pytest.raises(RuntimeError, match="at least 2 embeddings"):
        fad.compute()


def _tiny_tagger(seed: int = 0) -> PasstTagger:
    torch.manual_seed(seed)
    return PasstTagger(input_tdim=250, embed_dim=32, depth=2, num_heads=2, num_classes=12).eval()


def test_kld_identical_zero_positive_otherwise_and_symmetric():
    metric = PasstKLDivergenceMetric(pretrained_length=2, model=_tiny_tagger())
    torch.manual_seed(0)
    x = 0.1 * torch.randn(3, 1, 16000 * 5)
    y = 0.1 * torch.randn(3, 1, 16000 * 5) + 0.3 * torch.sin(torch.arange(16000 * 5) / 5)
    sizes, rates = torch.tensor([80000, 60000, 20000]), torch.full((3,), 16000)
    metric.update(x, x, sizes, rates)
    same = metric.compute()
    assert set(same) == {'kld', 'kld_pq', 'kld_qp', 'kld_both'}
    assert all(abs(v) < 1e-4 for v in same.values())
    metric.reset()
    metric.update(y, x, sizes, rates)
    forward = metric.compute()
    assert forward['kld'] > 1e-4 and forward['kld_qp'] > 1e-4
    metric.reset()
    metric.update(x, y, sizes, rates)
    backward = metric.compute()
    assert backward['kld_both'] == pytest.approx(forward['kld_both'], rel=1e-6)
    assert backward['kld_pq'] == pytest.approx(forward['kld_qp'], rel=1e-6)


def test_kld_segments_like_audiocraft():
    metric = PasstKLDivergenceMetric(pretrained_length=2, model=_tiny_tagger())
    wav = torch.randn(1, 32000 * 5)  # 2 s + 2 s + 1 s
    assert [s.shape[-1] for s in metric._segments(wav, 32000)] == [64000, 64000, 32000]
    wav = torch.randn(1, 32000 * 4 + 100)  # a tail too short for one patch is dropped
    assert [s.shape[-1] for s in metric._segments(wav, 32000)] == [64000, 64000]
    metric.update(wav[None, :, :100], wav[None, :, :100], torch.tensor([100]), torch.tensor([32000]))
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()


def test_kl_divergence_definition():
    p = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.9, 0.1]], dtype=torch.float64)
    expected = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert kl_divergence(p, q, epsilon=0).item() == pytest.approx(expected)


def test_passt_loads_released_layout(monkeypatch):
    tagger = PasstTagger(input_tdim=998).eval()
    state = tagger.net.state_dict()
    assert {'patch_embed.proj.weight', 'cls_token', 'dist_token', 'new_pos_embed', 'freq_new_pos_embed',
            'time_new_pos_embed', 'blocks.11.attn.qkv.weight', 'blocks.0.mlp.fc2.bias', 'norm.weight',
            'head.0.weight', 'head.1.weight', 'head_dist.weight'} <= set(state)
    assert tagger.net.time_new_pos_embed.shape == (1, 768, 1, 99)
    requested = []
    monkeypatch.setattr(passt_module, 'load_weights', lambda path, what: requested.append(path) or state)
    loaded = load_passt(10)
    assert requested == [passt_module.PASST_VARIANTS[10].url]
    wav = 0.1 * torch.randn(1, 32000)
    torch.testing.assert_close(loaded(wav), tagger(wav))
    with pytest.raises(ValueError, match="pretrained_length"):
        load_passt(15)


def _import_hear21passt_net(monkeypatch):
    """hear21passt's PaSST module; its only timm use (a downloader) is stubbed when timm is absent."""
    pytest.importorskip('hear21passt')
    try:
        import timm.models._hub  # noqa: F401
    except Exception:
        hub = types.ModuleType('timm.models._hub')
        hub.download_cached_file = lambda *args, **kwargs: None  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, 'timm', types.ModuleType('timm'))
        monkeypatch.setitem(sys.modules, 'timm.models', types.ModuleType('timm.models'))
        monkeypatch.setitem(sys.modules, 'timm.models._hub', hub)
    from hear21passt.models import passt as reference
    return reference


def test_passt_matches_hear21passt(monkeypatch, capsys):
    reference = _import_hear21passt_net(monkeypatch)
    torch.manual_seed(0)
    theirs = reference.get_model(arch='passt_s_swa_p16_128_ap476', pretrained=False, input_tdim=998).eval()
    ours = PasstTagger(input_tdim=998).eval()
    ours.net.load_state_dict(theirs.state_dict())
    spec = torch.randn(2, 1, 128, 301)
    with torch.no_grad():
        logits, features = theirs(spec)
        torch.testing.assert_close(ours.net(spec)[0], logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.net(spec)[1], features, rtol=1e-4, atol=1e-4)
    capsys.readouterr()  # hear21passt prints the model


def test_passt_mel_banks_match_torchaudio():
    kaldi = pytest.importorskip('torchaudio.compliance.kaldi')
    expected, _ = kaldi.get_mel_banks(128, 1024, 32000, 0.0, 15000, vtln_low=100.0, vtln_high=-500.,
                                      vtln_warp_factor=1.0)
    torch.testing.assert_close(kaldi_mel_banks(128, 1024, 32000, 0.0, 15000), expected)
