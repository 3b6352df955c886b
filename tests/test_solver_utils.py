"""Training utilities: environment, solver builders, sample manager, caches, autocast."""
from pathlib import Path

import dora
import omegaconf
import pytest
import torch
from torch import nn

from audiocraft.environment import AudioCraftEnvironment
from audiocraft.solvers import builders
from audiocraft.utils.autocast import TorchAutocast
from audiocraft.utils.cache import CachedBatchLoader, CachedBatchWriter, EmbeddingCache
from audiocraft.utils.samples.manager import SampleManager, get_samples_for_xps, slugify


def test_environment_team_cluster_and_overrides(monkeypatch, tmp_path):
    for var in ('AUDIOCRAFT_TEAM', 'AUDIOCRAFT_CLUSTER', 'AUDIOCRAFT_DORA_DIR', 'AUDIOCRAFT_REFERENCE_DIR',
                'AUDIOCRAFT_CONFIG', 'AUDIOCRAFT_CACHE_DIR'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('USER', 'alice')
    assert AudioCraftEnvironment.get_team() == 'default'
    assert AudioCraftEnvironment.get_dora_dir() == Path('/tmp/audiocraft_alice')
    assert AudioCraftEnvironment.get_slurm_partitions() == 'debug,debug'
    assert AudioCraftEnvironment.get_cache_dir() is None

    monkeypatch.setenv('AUDIOCRAFT_TEAM', 'labs')
    monkeypatch.setenv('AUDIOCRAFT_CLUSTER', 'fair')
    assert AudioCraftEnvironment.get_dora_dir() == Path('/checkpoint/alice/experiments/audiocraft/outputs')
    assert AudioCraftEnvironment.get_slurm_partitions(['team']) == 'learnlab'
    assert AudioCraftEnvironment.apply_dataset_mappers('/datasets01/datasets01/x.wav') == '/datasets01/x.wav'
    assert AudioCraftEnvironment.resolve_reference_path('//reference/clap/m.pt') == \
        Path('/large_experiments/audiocraft/reference/clap/m.pt')
    assert AudioCraftEnvironment.resolve_reference_path('/abs/file.pt') == Path('/abs/file.pt')
    with pytest.raises(KeyError, match="partition"):
        AudioCraftEnvironment.get_slurm_partitions(['gpu_heavy'])

    # environment variables win, and are read again at every call
    monkeypatch.setenv('AUDIOCRAFT_DORA_DIR', str(tmp_path / 'dora'))
    monkeypatch.setenv('AUDIOCRAFT_REFERENCE_DIR', str(tmp_path / 'ref'))
    monkeypatch.setenv('AUDIOCRAFT_CACHE_DIR', str(tmp_path / 'cache'))
    assert AudioCraftEnvironment.get_dora_dir() == tmp_path / 'dora'
    assert AudioCraftEnvironment.resolve_reference_path('//reference/a.pt') == tmp_path / 'ref' / 'a.pt'
    assert AudioCraftEnvironment.get_cache_dir() == tmp_path / 'cache'

    custom = tmp_path / 'team.yaml'
    custom.write_text("default:\n  dora_dir: /data/xps\n  partitions: {global: big, team: small}\n"
                      "  reference_dir: /data/ref\n")
    monkeypatch.setenv('AUDIOCRAFT_CONFIG', str(custom))
    monkeypatch.setenv('AUDIOCRAFT_CLUSTER', 'unknown_cluster')  # falls back on `default`
    assert AudioCraftEnvironment.get_slurm_partitions() == 'big,small'
    monkeypatch.delenv('AUDIOCRAFT_CONFIG')
    monkeypatch.setenv('AUDIOCRAFT_TEAM', 'nobody')
    with pytest.raises(FileNotFoundError, match="AUDIOCRAFT_TEAM"):
        AudioCraftEnvironment.get_slurm_partitions()


def test_optimizers_schedulers_and_ema():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    adam = {'betas': [0.9, 0.95], 'weight_decay': 0.1}
    cfg = omegaconf.OmegaConf.create({'optimizer': 'adamw', 'lr': 1e-3, 'adam': adam})
    opt = builders.get_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults['weight_decay'] == 0.1
    cfg.optimizer = 'sgd'
    with pytest.raises(ValueError, match="Unsupported optimizer"):
        builders.get_optimizer(model, cfg)
    cosine = {'warmup': 2, 'lr_min_ratio': 0., 'cycle_length': 1.}
    schedule = omegaconf.OmegaConf.create({'lr_scheduler': 'cosine', 'cosine': cosine})
    sched = builders.get_lr_scheduler(opt, schedule, total_updates=10)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[1] < lrs[2] and lrs[3] < lrs[2]  # warmup then decay
    schedule.lr_scheduler = None
    assert builders.get_lr_scheduler(opt, schedule, 10) is None
    schedule.lr_scheduler = 'bogus'
    with pytest.raises(ValueError, match="Unsupported LR scheduler"):
        builders.get_lr_scheduler(opt, schedule, 10)
    ema_cfg = omegaconf.OmegaConf.create({'use': True, 'updates': 1, 'device': 'cpu', 'decay': 0.5})
    ema = builders.get_ema(nn.ModuleDict({'model': model}), ema_cfg)
    assert ema is not None and ema.decay == 0.5
    ema_cfg.use = False
    assert builders.get_ema(nn.ModuleDict({'model': model}), ema_cfg) is None
    with pytest.raises(ValueError, match="Unknown loss"):
        builders.get_loss('l7', omegaconf.OmegaConf.create({}))
    with pytest.raises(ValueError, match="metrics.fad.model=vggish"):
        builders.get_fad(omegaconf.OmegaConf.create({'model': 'tf'}))
    with pytest.raises(ValueError, match="Unknown FAD model"):
        builders.get_fad(omegaconf.OmegaConf.create({'model': 'pann'}))


class _Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(4, 2)
        self.emb.make_optim_group = lambda: {'params': list(self.emb.parameters()), 'lr': 0.5}
        self.lin = nn.Linear(2, 2)


def test_parameter_groups():
    groups = builders.get_optim_parameter_groups(_Grouped())
    assert len(groups) == 2 and len(groups[0]['params']) == 2 and groups[1]['lr'] == 0.5


@pytest.fixture
def xp(tmp_path):
    cfg = omegaconf.OmegaConf.create({'sample_rate': 8000, 'generate': {
        'path': 'samples', 'audio': {'format': 'wav', 'strategy': 'peak', 'sample_rate': None}}})
    return dora.XP(dora=dora.conf.DoraConfig(dir=tmp_path, exclude=[]), cfg=cfg, argv=[], sig='xp000001')


def test_sample_manager(xp):
    manager = SampleManager(xp)
    wavs = 0.1 * torch.randn(2, 1, 800)
    prompts = wavs[..., :200]
    conditions = [{'description': 'Happy rock!'}, {'description': 'sad jazz'}]
    samples = manager.add_samples(wavs, epoch=3, conditioning=conditions, prompt_wavs=prompts,
                                  ground_truth_wavs=wavs, generation_args={'top_k': 250})
    assert all(s.id.endswith('_prompted_description=' + slugify(c['description']))
               for s, c in zip(samples, conditions))
    assert Path(samples[0].path).exists() and Path(samples[0].prompt.path).exists()
    assert samples[0].duration == 0.1 and samples[0].prompt.duration == 0.025
    # unconditioned samples of successive batches do not overwrite each other
    manager.add_samples(wavs, epoch=3)
    manager.add_samples(wavs, epoch=3)
    # (they are named by their running index in the epoch)
    assert {s.id for s in manager.get_samples(epoch=3, exclude_conditioned=True)} == \
        {'noinput_2', 'noinput_3', 'noinput_4', 'noinput_5'}
    manager.add_samples(wavs[:1], epoch=5, conditioning=conditions[:1])
    reloaded = SampleManager(xp)
    assert reloaded.latest_epoch == 5
    assert len(reloaded.get_samples()) == 1
    assert len(reloaded.get_samples(epoch=3, exclude_unprompted=True)) == 2
    assert len(reloaded.get_samples(max_epoch=4)) == 6
    wav, sr = samples[0].audio()
    assert sr == 8000 and wav.shape[-1] == 800
    matched = get_samples_for_xps([xp], epoch=3)
    assert len(matched) == 6 and all(len(v) == 1 for v in matched.values())


def test_cached_batches_round_trip(tmp_path):
    writer = CachedBatchWriter(tmp_path / 'cache')
    writer.start_epoch(1)
    for step in range(3):
        writer.save([torch.full((2,), step), torch.full((2,), 10 + step)], ['a', 'b'])
    loader = CachedBatchLoader(tmp_path / 'cache', batch_size=1, num_workers=2, min_length=3)
    loader.start_epoch(1)
    assert len(loader) == 3
    batches = list(loader)
    assert len(batches) == 3
    tensors, names = batches[2]
    assert torch.equal(tensors, torch.full((1, 2), 2)) and names == ['a']
    loader.start_epoch(2)
    with pytest.raises(RuntimeError, match="at least 3 batches"):
        list(loader)
    big = CachedBatchLoader(tmp_path / 'cache', batch_size=4, num_workers=1)
    big.start_epoch(1)
    with pytest.raises(RuntimeError, match="max batch size of 2"):
        list(big)


def test_embedding_cache(tmp_path):
    calls = []

    def compute(path, x, idx):
        calls.append(path)
        return torch.arange(10.) + len(str(path))

    cache = EmbeddingCache(tmp_path / 'emb', 'cpu', compute, extract_embed_fn=lambda full, x, idx: full[x[idx]:])
    out = cache.get_embed_from_cache([Path('/a.wav'), Path('/bb.wav')], [5, 5])
    assert out.shape == (2, 5) and len(calls) == 2
    out2 = cache.get_embed_from_cache([Path('/a.wav'), Path('/bb.wav')], [5, 5])
    assert torch.equal(out, out2) and len(calls) == 2  # served from disk
    cache.populate_embed_cache([Path('/a.wav'), Path('/ccc.wav')], None)
    assert calls[-1] == Path('/ccc.wav') and len(calls) == 3


def test_torch_autocast():
    with TorchAutocast(enabled=False, device_type='cpu', dtype=torch.bfloat16):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    with TorchAutocast(enabled=True, device_type='cpu', dtype=torch.bfloat16):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
