"""No code runs from a file a user points at: every entry point loads with `safe_torch_load`.

A "malicious" object here is one whose unpickling writes a marker file; each test checks the
marker is never written, whichever entry point reads the file. Real AudioCraft files (pretrained
packages, training checkpoints with omegaconf configs, cached batches) still load.
"""
from pathlib import Path
import shutil
import zipfile

import omegaconf
import pytest
import torch

from audiocraft.utils import checkpoint
from audiocraft.utils.safe_load import (UNSAFE_ENV_VAR, UnsafeCheckpointError, batch_cache_safe_globals,
                                        safe_torch_load)


class Payload:
    """Unpickling this object runs `exec`, which writes `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv(UNSAFE_ENV_VAR, raising=False)
    path = tmp_path / 'code_ran'
    yield path


def _evil_pretrained_folder(tmp_path: Path, source: Path, marker: Path, which: str = 'state_dict.bin') -> Path:
    """A copy of a real pretrained folder whose `which` package holds one extra malicious entry."""
    folder = tmp_path / 'evil_model'
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns('io.pt', 'case.json'))
    pkg = torch.load(folder / which, weights_only=True)
    pkg['extra'] = Payload(marker)
    torch.save(pkg, folder / which)
    return folder


def test_unsafe_object_is_refused_and_opt_in_is_explicit(tmp_path, marker, monkeypatch):
    path = tmp_path / 'evil.th'
    torch.save({'w': torch.ones(2), 'x': Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=rf"the object (builtins\.)?exec.*{UNSAFE_ENV_VAR}=1") as info:
        safe_torch_load(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    for value in ('0', '', 'no'):
        monkeypatch.setenv(UNSAFE_ENV_VAR, value)
        with pytest.raises(UnsafeCheckpointError):
            safe_torch_load(path)
    assert not marker.exists()
    # Only an explicit opt-in unpickles fully (and then the file's code does run).
    assert safe_torch_load(path, allow_unsafe_pickle=True)['w'].sum() == 2
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv(UNSAFE_ENV_VAR, '1')
    safe_torch_load(path)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError):  # the argument wins over the environment
        safe_torch_load(path, allow_unsafe_pickle=False)
    assert not marker.exists()


@pytest.mark.parametrize('which', ['state_dict.bin', 'compression_state_dict.bin'])
def test_get_pretrained_never_runs_code(tmp_path, cases_dir, marker, which):
    from audiocraft.models import CompressionModel, MAGNeT, MusicGen
    folder = _evil_pretrained_folder(tmp_path, cases_dir / 'musicgen_text_tiny', marker, which)
    with pytest.raises(UnsafeCheckpointError, match=which):
        MusicGen.get_pretrained(str(folder), device='cpu')
    with pytest.raises(UnsafeCheckpointError):
        MAGNeT.get_pretrained(str(folder), device='cpu')
    if which == 'compression_state_dict.bin':
        with pytest.raises(UnsafeCheckpointError):
            CompressionModel.get_pretrained(str(folder / which), device='cpu')
    assert not marker.exists()


def test_downloaded_files_are_never_fully_unpickled(tmp_path, cases_dir, marker, monkeypatch):
    from audiocraft.models import loaders
    folder = _evil_pretrained_folder(tmp_path, cases_dir / 'encodec_32khz_mono', marker,
                                     'compression_state_dict.bin')
    monkeypatch.setenv(UNSAFE_ENV_VAR, '1')  # even opted in: files from the network are not trusted
    monkeypatch.setattr(loaders, '_download_url', lambda url: folder / 'compression_state_dict.bin')
    with pytest.raises(UnsafeCheckpointError):
        loaders.load_compression_model('https://example.com/compression_state_dict.bin')
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, 'hf_hub_download',
                        lambda repo_id, filename, **kwargs: str(folder / filename))
    with pytest.raises(UnsafeCheckpointError):
        loaders.load_compression_model('org/model')
    assert not marker.exists()


def test_cli_never_runs_code(tmp_path, cases_dir, marker, capsys):
    from audiocraft.__main__ import main
    folder = _evil_pretrained_folder(tmp_path, cases_dir / 'musicgen_text_tiny', marker)
    for family in ('auto', 'musicgen'):
        code = main(['generate', '--model', str(folder), '--family', family, '--duration', '0.1',
                     '--output', str(tmp_path / 'out'), '--no-progress', 'x'])
        assert code == 2
        assert 'safe loading does not allow' in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / 'out').exists()


def test_demo_model_path_never_runs_code(tmp_path, cases_dir, marker):
    gr = pytest.importorskip('gradio')
    from demos.common import load_pretrained
    from audiocraft.models import MusicGen
    folder = _evil_pretrained_folder(tmp_path, cases_dir / 'musicgen_text_tiny', marker)
    with pytest.raises(gr.Error, match='safe loading'):
        load_pretrained(MusicGen, str(folder), 'cpu')
    assert not marker.exists()


def _training_checkpoint() -> dict:
    """A training checkpoint as our solvers write it: omegaconf config (with a filled resolver
    cache, as Hydra's `now` leaves it), optimizer and scheduler states, EMA, history."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    cfg = omegaconf.OmegaConf.create({'solver': 'musicgen', 'dataset': {'segment_duration': 1.0},
                                      'lm_model': 'transformer_lm', 'list': [1, 'a', {'b': None}]})
    cfg._metadata.resolver_cache['now'][('%Y-%m-%d',)] = '2024-01-01'
    return {'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'lr_scheduler': scheduler.state_dict(),
            'ema': {'state': {'model': model.state_dict()}}, 'best_state': {'model': model.state_dict()},
            'fsdp_best_state': {}, 'history': [{'train': {'loss': 1.5}}], 'xp.cfg': cfg, 'xp.sig': 'abcd'}


def test_training_checkpoints_still_load(tmp_path, marker):
    path = tmp_path / 'checkpoint.th'
    state = _training_checkpoint()
    checkpoint.save_checkpoint(state, path)
    loaded = checkpoint.load_checkpoint(path)
    assert isinstance(loaded['xp.cfg'], omegaconf.DictConfig) and loaded['xp.cfg'] == state['xp.cfg']
    # omegaconf's resolver cache comes back as the defaultdict omegaconf relies on
    assert loaded['xp.cfg']._metadata.resolver_cache['now'] == {('%Y-%m-%d',): '2024-01-01'}
    assert loaded['xp.cfg']._metadata.resolver_cache['other'] == {}
    assert loaded['optimizer']['param_groups'][0]['betas'] == (0.9, 0.95)
    assert torch.equal(loaded['model']['weight'], state['model']['weight'])


def test_continue_from_and_export_never_run_code(tmp_path, marker):
    from audiocraft.utils.export import export_encodec, export_lm
    state = _training_checkpoint()
    state['optimizer']['evil'] = Payload(marker)
    path = tmp_path / 'xp' / 'checkpoint.th'
    path.parent.mkdir()
    torch.save(state, path)
    # continue_from=<folder> resolves then loads with load_checkpoint
    resolved = checkpoint.resolve_checkpoint_path(str(path.parent))
    with pytest.raises(UnsafeCheckpointError, match='training checkpoint'):
        checkpoint.load_checkpoint(resolved)
    with pytest.raises(UnsafeCheckpointError):
        export_lm(path, tmp_path / 'out' / 'state_dict.bin')
    with pytest.raises(UnsafeCheckpointError):
        export_encodec(path, tmp_path / 'out' / 'compression_state_dict.bin')
    assert not marker.exists() and not (tmp_path / 'out' / 'state_dict.bin').exists()
    # opted in, the trusted file loads (and exports) as before
    assert checkpoint.load_checkpoint(resolved, allow_unsafe_pickle=True)['xp.sig'] == 'abcd'
    assert marker.exists()


def test_solver_continue_from_never_runs_code(tmp_path, marker, monkeypatch):
    """The solvers' own `continue_from` path (load_checkpoints) goes through load_checkpoint."""
    import inspect
    from audiocraft.solvers import base
    source = inspect.getsource(base.StandardSolver.load_checkpoints)
    assert 'checkpoint.load_checkpoint(' in source and 'torch.load' not in source


def test_embedding_cache_never_runs_code(tmp_path, marker):
    from audiocraft.utils.cache import EmbeddingCache
    calls = []

    def compute(path, x, idx):
        calls.append(path)
        return torch.ones(2, 3)
    cache = EmbeddingCache(tmp_path / 'cache', 'cpu', compute)
    torch.save(Payload(marker), cache._get_cache_path('song.wav'))
    out = cache.get_embed_from_cache([Path('song.wav')], None)
    assert out.shape == (1, 2, 3) and calls == [Path('song.wav')]  # recomputed, not unpickled
    assert not marker.exists()
    assert torch.equal(cache.get_embed_from_cache([Path('song.wav')], None), out) and len(calls) == 1


def _music_info():
    from audiocraft.data.audio_dataset import AudioMeta
    from audiocraft.data.music_dataset import MusicInfo
    from audiocraft.data.zip import PathInZip
    from audiocraft.modules.conditioners import WavCondition
    meta = AudioMeta(path='/data/a.wav', duration=3.0, sample_rate=16000, info_path=PathInZip('/d/x.zip:a.json'))
    info = MusicInfo(meta=meta, seek_time=0.5, n_frames=100, total_frames=120, sample_rate=16000, channels=1,
                     title='t', moods=['calm'], description='piano')
    info.self_wav = WavCondition(torch.zeros(1, 1, 4), torch.tensor([4]), [16000], ['/data/a.wav'], [0.0])
    info.audio_tokens = torch.arange(6, dtype=torch.int16).view(2, 3)
    return info


def test_batch_cache_round_trip_and_never_runs_code(tmp_path, marker):
    from audiocraft.utils.cache import CachedBatchLoader, CachedBatchWriter
    writer = CachedBatchWriter(tmp_path / 'cache')
    writer.start_epoch(0)
    info = _music_info()
    writer.save([info, info])
    loader = CachedBatchLoader(tmp_path / 'cache', batch_size=2, num_workers=1)
    loader.start_epoch(0)
    (batch,) = next(iter(loader))
    loaded = batch[1]
    assert type(loaded) is type(info) and loaded.meta == info.meta and loaded.moods == ['calm']
    assert torch.equal(loaded.audio_tokens, info.audio_tokens) and torch.equal(loaded.self_wav.wav, info.self_wav.wav)
    assert loaded.self_wav.path == ['/data/a.wav']
    # a zip entry holding a malicious object
    zip_path = tmp_path / 'cache' / '00000' / '000000.zip'
    with zipfile.ZipFile(zip_path, 'w') as zf:
        for idx in range(2):
            with zf.open(str(idx), 'w') as f:
                torch.save((Payload(marker),), f)
    with pytest.raises(UnsafeCheckpointError, match='cached batch'):
        next(iter(loader))
    assert not marker.exists()
    assert len(batch_cache_safe_globals()) == 8


def test_every_golden_case_loads_safely(cases_dir):
    for path in sorted(cases_dir.glob('*/*state_dict.bin')):
        pkg = safe_torch_load(path, allow_unsafe_pickle=False)
        assert 'best_state' in pkg or 'pretrained' in pkg, path
