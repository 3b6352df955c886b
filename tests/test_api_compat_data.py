"""API compatibility with AudioCraft: data, losses, adversarial, conditioners, utils and builders.

Written the way AudioCraft's tests/data, tests/losses, tests/adversarial tests use AudioCraft,
with helpers mirroring its tests/common_utils (TempDirMixin, get_white_noise, save_wav).
"""
import json
import math
import os
import random
from itertools import product

import julius
import omegaconf
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from audiocraft.adversarial.discriminators import (MultiPeriodDiscriminator, MultiScaleDiscriminator,
                                                   MultiScaleSTFTDiscriminator)
from audiocraft.adversarial.losses import (AdversarialLoss, FeatureMatchingLoss, get_adv_criterion,
                                           get_fake_criterion, get_real_criterion)
from audiocraft.data.audio import _av_read, audio_info, audio_read, audio_write
from audiocraft.data.audio_dataset import AudioDataset, AudioMeta, _get_audio_meta, load_audio_meta, save_audio_meta
from audiocraft.data.audio_utils import _clip_wav, convert_audio, convert_audio_channels, normalize_audio
from audiocraft.data.zip import PathInZip
from audiocraft.losses import SISNR, Balancer, MelSpectrogramL1Loss, MRSTFTLoss, MultiScaleMelSpectrogramLoss, STFTLoss
from audiocraft.models import builders
from audiocraft.modules.conditioners import (AttributeDropout, ClassifierFreeGuidanceDropout, ConditionFuser,
                                             ConditioningAttributes, ConditioningProvider, LUTConditioner,
                                             WavCondition, nullify_condition, nullify_wav)
from audiocraft.solvers.builders import get_lr_scheduler, get_optimizer
from audiocraft.utils import utils
from audiocraft.utils.autocast import TorchAutocast
from audiocraft.utils.errors import InvalidArgumentError
from audiocraft.utils.notebook import display_audio
from common_utils import TempDirMixin, get_batch_white_noise, get_white_noise, save_wav


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    random.seed(1234)


def test_invalid_argument_error_is_both_value_and_assertion_error():
    assert issubclass(InvalidArgumentError, ValueError) and issubclass(InvalidArgumentError, AssertionError)


# ---------------------------------------------------------------- audio io

class TestAudioIO(TempDirMixin):
    def test_read_write_wav(self):
        for sample_rate, ch in product([8000, 16_000], [1, 2]):
            wav = get_white_noise(ch, int(sample_rate * 0.5)).clamp(-1, 1)
            path = self.get_temp_path('sample_wav.wav')
            save_wav(path, wav, sample_rate)
            read_wav, read_sr = audio_read(path)
            assert read_sr == sample_rate and read_wav.shape == wav.shape
            assert torch.allclose(read_wav, wav, rtol=1e-3, atol=1e-4)
            part, _ = audio_read(path, 0.1, 0.2)
            assert part.shape[1] == int(0.2 * sample_rate)
            assert torch.allclose(part, wav[:, int(0.1 * sample_rate):][:, :part.shape[1]], atol=1e-4)
            padded, _ = audio_read(path, 0.4, 0.3, pad=True)
            assert padded.shape[1] == int(0.3 * sample_rate)

    def test_av_read_seek(self):
        sample_rate, n_frames = 16_000, 16_000
        path = self.get_temp_path('seek.wav')
        save_wav(path, get_white_noise(2, n_frames).clamp(-1, 1), sample_rate)
        wav, sr = _av_read(path, 0.5, 0.25)
        assert sr == sample_rate and wav.shape == (2, 4000)
        out, _ = _av_read(path, 1.5, 1.)
        assert out.shape[1] == 0
        edge, _ = _av_read(path, (n_frames - 1) / sample_rate, 1.)
        assert edge.shape[1] == 1

    def test_audio_info(self):
        for ext, (sample_rate, ch) in product(['.wav', '.flac'], product([8000, 16_000], [1, 2])):
            path = self.get_temp_path(f'info{ext}')
            save_wav(path, get_white_noise(ch, sample_rate).clamp(-1, 1), sample_rate)
            info = audio_info(path)
            assert info.sample_rate == sample_rate and info.channels == ch
            assert math.isclose(info.duration, 1., abs_tol=1e-5)
        path = self.get_temp_path('info.mp3')
        save_wav(path, get_white_noise(2, 16_000).clamp(-1, 1), 16_000)
        info = audio_info(path)
        assert info.sample_rate == 16_000 and info.channels == 2

    def test_audio_write_strategies(self):
        for fmt, strategy in product(['wav', 'mp3'], ['peak', 'clip', 'rms']):
            wav = get_white_noise(2, 1001)
            stem = self.get_temp_path(f'pred_{fmt}_{strategy}')
            path = audio_write(stem, wav, 16_000, fmt, strategy=strategy)
            assert str(path) == f'{stem}.{fmt}'
            read_wav, read_sr = audio_read(path)
            assert read_sr == 16_000 and read_wav.shape[0] == 2
            if fmt == 'wav':
                assert read_wav.shape == wav.shape
                if strategy in ['peak', 'rms']:
                    rescaled = read_wav / read_wav.abs().max() * wav.abs().max()
                    atol = (5 if strategy == 'peak' else 20) / 2 ** 15
                    assert torch.allclose(wav, rescaled, rtol=0, atol=atol)


def test_audio_utils():
    audio = get_batch_white_noise(2, 3, 100)
    assert list(convert_audio_channels(audio, channels=2).shape) == [2, 2, 100]
    assert convert_audio_channels(audio, channels=3).shape == audio.shape
    assert list(convert_audio_channels(get_batch_white_noise(2, 1, 100), channels=3).shape) == [2, 3, 100]
    with pytest.raises(ValueError):
        convert_audio_channels(get_batch_white_noise(2, 2, 100), channels=3)
    audio = get_batch_white_noise(2, 1, 8)
    out = convert_audio(audio, from_rate=2, to_rate=3, to_channels=1)
    assert torch.allclose(out, julius.resample.resample_frac(audio, old_sr=2, new_sr=3))
    loud = 10.0 * get_batch_white_noise(2, 1, 12)
    for strategy in ['clip', 'rms', 'peak']:
        assert (normalize_audio(loud, strategy=strategy).abs() <= 1).all()
    assert loud.abs().max() > 1  # normalize_audio leaves its input alone
    _clip_wav(loud)  # clips in place, as in AudioCraft
    assert (loud.abs() <= 1).all()


# ---------------------------------------------------------------- datasets

class TestAudioDatasetCompat(TempDirMixin):
    def _create_dataset(self, root_name: str, num_files: int, durations=(1., 2.), **kwargs) -> AudioDataset:
        root = self.get_temp_dir(root_name)
        for i in range(num_files):
            duration = durations if isinstance(durations, float) else random.uniform(*durations)
            save_wav(os.path.join(root, f'example_{i}.wav'),
                     get_white_noise(1, int(duration * 16_000)).clamp(-1, 1), 16_000)
        return AudioDataset.from_path(root, minimal_meta=True, sample_rate=16_000, channels=1, **kwargs)

    def test_audio_meta_roundtrip(self):
        path = self.get_temp_path('sample.wav')
        save_wav(path, get_white_noise(2, 8000), 8000)
        m = _get_audio_meta(path, minimal=True)
        assert m.path == path and m.sample_rate == 8000 and m.duration == 1.
        assert m.amplitude is None and m.info_path is None
        meta = [AudioMeta("/data/mypath1", 1., 16_000, None, None, PathInZip('/foo/bar.zip:/relative/file1.json')),
                AudioMeta("/data/mypath2", 2., 16_000, None, None, PathInZip('/foo/bar.zip:/relative/file2.json'))]
        for idx, metas in enumerate([meta, []]):
            manifest = self.get_temp_path(f'data_{idx}.jsonl')
            save_audio_meta(manifest, metas)
            with open(manifest) as f:
                assert [AudioMeta.from_dict(json.loads(line)) for line in f] == metas
            assert load_audio_meta(manifest) == metas

    def test_dataset_full_and_segments(self):
        full = self._create_dataset('full', 3, segment_duration=None, return_info=True)
        assert len(full) == 3 and full.sample_rate == 16_000 and full.channels == 1
        for wav, info in [full[i] for i in range(len(full))]:
            assert 16_000 <= wav.shape[1] <= 32_000
            assert info.n_frames == info.total_frames == wav.shape[1] and info.seek_time == 0
        seg = self._create_dataset('seg', 3, segment_duration=0.5, num_samples=8, return_info=True)
        assert len(seg) == 8
        wav, info = seg[0]
        assert wav.shape == (1, 8000) and info.total_frames == 8000 and info.seek_time >= 0
        batch_wav, infos = next(iter(DataLoader(seg, batch_size=4, collate_fn=seg.collater)))
        assert batch_wav.shape == (4, 1, 8000) and len(infos) == 4
        plain = self._create_dataset('plain', 1, durations=1., segment_duration=1., num_samples=2, shuffle=False)
        assert torch.allclose(plain[0], plain[0])
        assert next(iter(DataLoader(plain, batch_size=2))).shape == (2, 1, 16_000)

    def test_sample_with_weight(self):
        meta = [AudioMeta(path='a', duration=5, sample_rate=1, weight=2),
                AudioMeta(path='b', duration=10, sample_rate=1, weight=None),
                AudioMeta(path='c', duration=5, sample_rate=1, weight=0)]
        expected = {(True, True): (0.5, 0.5, 0.), (False, True): (0.25, 0.5, 0.25),
                    (True, False): (0.666, 0.333, 0.), (False, False): (0.333, 0.333, 0.333)}
        rng = torch.Generator().manual_seed(1234)
        for (on_weight, on_duration), hist in expected.items():
            dataset = AudioDataset(meta, segment_duration=1, sample_on_weight=on_weight,
                                   sample_on_duration=on_duration)
            counts = {'a': 0, 'b': 0, 'c': 0}
            for _ in range(3000):
                counts[dataset.sample_file(0, rng).path] += 1
            for name, ref in zip('abc', hist):
                assert math.isclose(counts[name] / 3000, ref, abs_tol=0.03)
        with pytest.raises(AssertionError):
            AudioDataset(meta, segment_duration=None, max_audio_duration=1)
        assert len(AudioDataset(meta, segment_duration=None, min_segment_ratio=1, max_audio_duration=7)) == 2


# ---------------------------------------------------------------- losses / adversarial

def test_losses():
    t1, t2 = torch.randn(2, 2, 4000), torch.randn(2, 2, 4000)
    for loss_fn in [MelSpectrogramL1Loss(sample_rate=22_050), MultiScaleMelSpectrogramLoss(sample_rate=22_050)]:
        assert isinstance(loss_fn(t1, t2), torch.Tensor) and loss_fn(t1, t1).item() == 0.0
    for loss_fn in [MRSTFTLoss(), STFTLoss(), SISNR(), SISNR(sample_rate=16_000, segment=0.1, overlap=0.5)]:
        loss = loss_fn(t1, t2)
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and torch.isfinite(loss)
    assert SISNR()(t1, t1) < SISNR()(t1, t2)


def test_balancer():
    x = torch.zeros(1, requires_grad=True)
    one = torch.ones_like(x)
    losses = {'1': F.l1_loss(x, one), '2': 100 * F.l1_loss(x, -one)}
    Balancer(weights={'1': 1, '2': 1}, balance_grads=False).backward(losses, x)
    assert torch.allclose(x.grad, torch.tensor(99.))
    x.grad = None
    losses = {'1': F.l1_loss(x, one), '2': 100 * F.l1_loss(x, -one)}
    Balancer(weights={'1': 1, '2': 1}, balance_grads=True).backward(losses, x)
    assert torch.allclose(x.grad, torch.tensor(0.), atol=1e-6)


def test_discriminators():
    N, C, T = 2, 2, 1000
    x = torch.randn(N, C, T)
    mpd = MultiPeriodDiscriminator(periods=[1, 2, 3], in_channels=C)
    msd = MultiScaleDiscriminator(scale_norms=['weight_norm', 'weight_norm'], in_channels=C)
    msstftd = MultiScaleSTFTDiscriminator(filters=4, n_ffts=[128, 256, 64], hop_lengths=[32, 64, 16],
                                          win_lengths=[128, 256, 64], in_channels=C)
    for disc, n, logit_dim in [(mpd, 3, 4), (msd, 2, 3), (msstftd, 3, 4)]:
        logits, fmaps = disc(x)
        assert len(logits) == n == len(fmaps) == disc.num_discriminators
        assert all(logit.shape[0] == N and logit.dim() == logit_dim for logit in logits)
        assert all(feature.shape[0] == N for fmap in fmaps for feature in fmap)


def test_adversarial_losses():
    adv = MultiScaleDiscriminator(filters=4, max_filters=32)
    optimizer = torch.optim.Adam(adv.parameters(), lr=1e-4)
    crit = [get_adv_criterion('mse'), get_real_criterion('mse'), get_fake_criterion('mse')]
    real, fake = torch.randn(2, 1, 400), torch.randn(2, 1, 400)
    adv_loss = AdversarialLoss(adv, optimizer, *crit)
    disc_loss = adv_loss.train_adv(fake, real)
    assert isinstance(disc_loss, torch.Tensor) and isinstance(disc_loss.item(), float)
    loss, loss_feat = adv_loss(fake, real)
    assert isinstance(loss.item(), float) and loss_feat.item() == 0.
    _, loss_feat = AdversarialLoss(adv, optimizer, *crit, FeatureMatchingLoss())(fake, real)
    assert loss_feat.item() > 0.
    hinge, mse = get_adv_criterion('hinge'), get_adv_criterion('mse')
    empty = torch.randn(1, 2, 0)
    assert hinge(empty).item() == 0.0 and mse(empty).item() == 0.0
    assert hinge(torch.tensor([1., 2., 3.])).item() == -2.0
    assert mse(torch.tensor([2., 5., 5.])).item() == 11.0

    def disc(loss_type, fake, real):
        return (get_fake_criterion(loss_type)(fake) + get_real_criterion(loss_type)(real)).item()
    t0, t1 = torch.zeros(3), torch.tensor([1., 2., 3.])
    assert disc('hinge', t0, t0) == 2.0 and disc('hinge', t1, t1) == 3.0
    assert disc('mse', t0, t0) == 1.0 and disc('mse', torch.ones(3), t0) == 2.0


def test_feature_matching_loss():
    t1 = torch.randn(1, 2, 100)
    loss_fn = FeatureMatchingLoss()
    assert loss_fn([t1], [t1]).item() == 0.0
    for fake, real in [([], []), ([t1], [t1, t1]), ([t1], [torch.randn(1, 2, 101)])]:
        with pytest.raises(AssertionError):
            loss_fn(fake, real)
    t3, t4 = torch.tensor([1., 2., 3.]), torch.tensor([2., 10., 3.])
    assert FeatureMatchingLoss(normalize=False)([t3, t3], [t4, t4]).item() == 6.0
    assert FeatureMatchingLoss(normalize=True)([t3, t3], [t4, t4]).item() == 3.0


# ---------------------------------------------------------------- conditioners

def test_conditioning_attributes_and_dropout():
    wav = torch.randn(1, 1, 100)
    attr = ConditioningAttributes(text={'description': 'a tune', 'genre': 'rock'},
                                  wav={'self_wav': WavCondition(wav, torch.tensor([100]), [16_000], ['x.wav'], [0.])})
    assert attr['text']['genre'] == 'rock' and set(attr.text_attributes) == {'description', 'genre'}
    flat = attr.to_flat_dict()
    assert flat['text.description'] == 'a tune'
    null = nullify_wav(attr.wav['self_wav'])
    assert null.wav.abs().sum() == 0 and null.length.item() == 0
    emb, mask = nullify_condition((torch.ones(2, 3, 4), torch.ones(2, 3)))
    assert emb.abs().sum() == 0 and mask.sum() == 0
    dropped = ClassifierFreeGuidanceDropout(p=1.0)([attr])
    assert dropped[0].text['description'] is None and dropped[0].wav['self_wav'].wav.abs().sum() == 0
    assert attr.text['description'] == 'a tune'  # the input is not modified
    kept = AttributeDropout(p={'text': {'genre': 1.0}}, active_on_eval=True)([attr])
    assert kept[0].text['genre'] is None and kept[0].text['description'] == 'a tune'


def test_provider_and_fuser():
    lut = LUTConditioner(n_bins=64, dim=8, output_dim=16, tokenizer='noop')
    provider = ConditioningProvider({'genre': lut})
    attrs = [ConditioningAttributes(text={'genre': 'rock'}), ConditioningAttributes(text={'genre': None})]
    tokenized = provider.tokenize(attrs)
    conditions = provider(tokenized)
    emb, mask = conditions['genre']
    assert emb.shape == (2, 1, 16) and mask.tolist() == [[1], [0]]
    x = torch.randn(2, 5, 16)
    out, cross = ConditionFuser({'cross': ['genre']})(x, conditions)
    assert torch.equal(out, x) and cross.shape == (2, 1, 16)
    out, cross = ConditionFuser({'prepend': ['genre']})(x, conditions)
    assert out.shape == (2, 6, 16) and cross is None
    out, _ = ConditionFuser({'sum': ['genre']})(x[:, :1], conditions)
    assert torch.allclose(out, x[:, :1] + emb)


# ---------------------------------------------------------------- utils / builders / optim

def test_utils_helpers():
    assert utils.length_to_mask(torch.tensor([1, 3])).tolist() == [[True, False, False], [True, True, True]]
    padded, lengths = utils.collate([torch.ones(2), torch.ones(4)], dim=0)
    assert padded.shape == (2, 4) and lengths.tolist() == [2, 4]
    probs = torch.softmax(torch.randn(3, 5, 10), dim=-1)
    assert utils.multinomial(probs, num_samples=1).shape == (3, 5, 1)
    top1 = utils.sample_top_k(probs.clone(), k=1)
    assert torch.equal(top1, probs.argmax(-1, keepdim=True))
    assert torch.equal(utils.sample_top_p(probs.clone(), p=0.0), probs.argmax(-1, keepdim=True))
    assert utils.hash_trick('hello', 128) == utils.hash_trick('hello', 128) < 128
    cfg = omegaconf.OmegaConf.create({'a': 1, 'b': {'c': '${a}'}})
    assert utils.dict_from_config(cfg) == {'a': 1, 'b': {'c': 1}}
    with utils.get_pool_executor(0) as pool:
        assert pool.submit(pow, 2, 5).result() == 32
    subset = utils.random_subset(list(range(10)), 4)
    assert len(subset) == 4
    model = torch.nn.Linear(2, 2)
    h = utils.model_hash(model)
    state = utils.copy_state(model.state_dict())
    with utils.swap_state(model, {k: torch.zeros_like(v) for k, v in state.items()}):
        assert model.weight.abs().sum() == 0 and utils.model_hash(model) != h
    assert utils.model_hash(model) == h
    with TorchAutocast(enabled=False, device_type='cpu', dtype=torch.bfloat16):
        assert model(torch.ones(1, 2)).dtype == torch.float32
    assert utils.is_jsonable({'a': [1]}) and not utils.is_jsonable(torch.ones(1))


def test_display_audio(capsys):
    display_audio(torch.randn(2, 1, 100) * 0.1, sample_rate=16_000)
    display_audio(torch.randn(1, 100) * 0.1, sample_rate=16_000)
    assert capsys.readouterr().out.count('Audio') == 3
    with pytest.raises(ValueError):
        display_audio(torch.zeros(100), sample_rate=16_000)


def test_builders_and_schedulers():
    cfg = omegaconf.OmegaConf.create({'delay': {'delays': [0, 1, 2, 3]}, 'modeling': 'delay'})
    provider = builders.get_codebooks_pattern_provider(4, cfg)
    assert provider.get_pattern(5).max_delay == 3
    codec = builders.get_debug_compression_model('cpu')
    assert codec.frame_rate == 25 and codec.sample_rate == 32000 and codec.num_codebooks == 4
    lm = builders.get_debug_lm_model('cpu')
    assert lm.num_codebooks == 4 and lm.card == 400
    params = torch.nn.Linear(2, 2).parameters()
    opt = get_optimizer(params, omegaconf.OmegaConf.create({'optimizer': 'adamw', 'lr': 1e-3,
                                                           'adam': {'betas': [0.9, 0.95], 'weight_decay': 0.1}}))
    sched_cfg = omegaconf.OmegaConf.create({'lr_scheduler': 'cosine',
                                            'cosine': {'warmup': 4, 'lr_min_ratio': 0.0, 'cycle_length': 1.0}})
    sched = get_lr_scheduler(opt, sched_cfg, total_updates=20)
    lrs = []
    for _ in range(20):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]['lr'])
    assert lrs[2] == pytest.approx(0.75e-3) and lrs[3] == pytest.approx(1e-3) and lrs[-1] < 1e-4


def test_compat_names():
    from audiocraft.data.audio import _av_info, _soundfile_info
    from audiocraft.data.zip import set_zip_cache_size
    from audiocraft.modules.conditioners import TextCondition  # noqa: F401
    from audiocraft.modules.transformer import expand_repeated_kv, get_efficient_attention_backend
    assert _av_info is audio_info and _soundfile_info is audio_info
    set_zip_cache_size(32)
    assert get_efficient_attention_backend() == 'torch'
    kv = torch.randn(2, 3, 5, 4)
    assert torch.equal(expand_repeated_kv(kv, 2, memory_efficient=False),
                       kv[:, :, None].expand(2, 3, 2, 5, 4).reshape(2, 6, 5, 4))
    assert expand_repeated_kv(kv, 1, memory_efficient=True) is kv
    with pytest.raises((ImportError, FileNotFoundError)):
        utils.load_clap_state_dict(object(), '/nonexistent/clap.pt')
