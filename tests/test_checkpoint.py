"""Checkpoints: atomic writes (even under SIGKILL), resolution, cleanup, best states."""
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from audiocraft.utils import checkpoint
from audiocraft.utils.best_state import BestStateDictManager


def test_checkpoint_names():
    assert checkpoint.checkpoint_name() == 'checkpoint.th'
    assert checkpoint.checkpoint_name('12') == 'checkpoint_12.th'
    assert checkpoint.checkpoint_name(rank=3, use_fsdp=True) == 'checkpoint.th.3'
    assert checkpoint.checkpoint_name(rank=3, use_fsdp=False) == 'checkpoint.th'
    assert checkpoint.is_sharded_checkpoint(Path('checkpoint.th.3'))
    assert not checkpoint.is_sharded_checkpoint(Path('checkpoint.th'))


def test_save_and_load_round_trip(tmp_path):
    state = {'model': {'w': torch.randn(3, 3)}, 'history': [{'train': {'loss': 1.0}}]}
    path = tmp_path / 'checkpoint.th'
    checkpoint.save_checkpoint(state, path)
    loaded = checkpoint.load_checkpoint(path)
    assert torch.equal(loaded['model']['w'], state['model']['w']) and loaded['history'] == state['history']
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_failure_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'checkpoint.th'
    checkpoint.save_checkpoint({'epoch': 1}, path)
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b'half written garbage')
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(torch, 'save', crashing_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint({'epoch': 2}, path)
    monkeypatch.setattr(torch, 'save', real_save)
    assert checkpoint.load_checkpoint(path) == {'epoch': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['checkpoint.th']


def test_sigkill_mid_write_never_leaves_a_partial_checkpoint(tmp_path):
    """A process killed while writing leaves the previous complete checkpoint in place."""
    path = tmp_path / 'checkpoint.th'
    # The slow (second) save writes this marker once its partial data is on disk: the first save
    # also writes `checkpoint.th.tmp`, so polling that file could kill the writer during the first save.
    started = tmp_path / 'second_save_started'
    script = textwrap.dedent(f"""
        import time, torch
        from audiocraft.utils import checkpoint
        checkpoint.save_checkpoint({{'epoch': 1}}, {str(path)!r})
        real_save = torch.save
        def slow_save(obj, f, *args, **kwargs):
            f.write(b'x' * 1000)
            f.flush()
            open({str(started)!r}, 'w').close()
            time.sleep(600)  # killed here
            real_save(obj, f, *args, **kwargs)
        torch.save = slow_save
        checkpoint.save_checkpoint({{'epoch': 2}}, {str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, '-c', script])
    tmp = path.with_name(path.name + '.tmp')
    deadline = time.time() + 300
    while not started.exists():
        assert proc.poll() is None, "writer exited early"
        assert time.time() < deadline, "writer never started the second save"
        time.sleep(0.1)
    assert tmp.stat().st_size >= 1000
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.load_checkpoint(path) == {'epoch': 1}
    # the leftover temporary file is cleaned up by the next save's flush
    checkpoint.save_checkpoint({'epoch': 2}, path)
    checkpoint.flush_stale_checkpoints(path)
    assert checkpoint.load_checkpoint(path) == {'epoch': 2}
    assert not tmp.exists()


def test_corrupted_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / 'checkpoint.th'
    path.write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match="could not be loaded"):
        checkpoint.load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        checkpoint.load_checkpoint(tmp_path / 'missing.th')


def test_resolve_checkpoint_path(tmp_path, monkeypatch):
    monkeypatch.setenv('AUDIOCRAFT_DORA_DIR', str(tmp_path / 'dora'))
    monkeypatch.setenv('AUDIOCRAFT_REFERENCE_DIR', str(tmp_path / 'ref'))
    xp_folder = tmp_path / 'dora' / 'xps' / 'abcd1234'
    xp_folder.mkdir(parents=True)
    assert checkpoint.resolve_checkpoint_path('//sig/abcd1234') is None
    checkpoint.save_checkpoint({'a': 1}, xp_folder / 'checkpoint.th')
    checkpoint.save_checkpoint({'a': 2}, xp_folder / 'checkpoint_best.th')
    assert checkpoint.resolve_checkpoint_path('//sig/abcd1234') == xp_folder / 'checkpoint.th'
    assert checkpoint.resolve_checkpoint_path('//sig/abcd1234', name='best') == xp_folder / 'checkpoint_best.th'
    assert checkpoint.resolve_checkpoint_path(xp_folder) == xp_folder / 'checkpoint.th'
    assert checkpoint.resolve_checkpoint_path(xp_folder / 'checkpoint.th') == xp_folder / 'checkpoint.th'
    (tmp_path / 'ref').mkdir()
    checkpoint.save_checkpoint({'a': 3}, tmp_path / 'ref' / 'model.th')
    assert checkpoint.resolve_checkpoint_path('//reference/model.th') == tmp_path / 'ref' / 'model.th'
    assert checkpoint.resolve_checkpoint_path('//sig/unknown') is None


def test_flush_stale_checkpoints_keeps_the_latest(tmp_path):
    last = tmp_path / 'checkpoint.th'
    checkpoint.save_checkpoint({}, last)
    for epoch in [5, 10, 15, 20]:
        checkpoint.save_checkpoint({'epoch': epoch}, tmp_path / f'checkpoint_{epoch}.th')
    (tmp_path / 'checkpoint.th.tmp').write_bytes(b'leftover of a killed save')
    checkpoint.flush_stale_checkpoints(last, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint.th', 'checkpoint_15.th', 'checkpoint_20.th']
    checkpoint.flush_stale_checkpoints(last, keep_last=None)
    assert len(list(tmp_path.iterdir())) == 3


def test_interrupted_sharded_save_is_completed_on_load(tmp_path):
    rank0 = tmp_path / 'checkpoint.th'
    shard = tmp_path / 'checkpoint.th.1'
    checkpoint.save_checkpoint({'shard': 'old'}, shard)
    # every shard was written (token present) but the rename of shard 1 did not happen
    torch.save({'shard': 'new'}, str(shard) + '.tmp')
    Path(str(rank0) + '.tmp.done').touch()
    torch.save({'shard': 0}, rank0)
    assert checkpoint.load_checkpoint(shard, is_sharded=True) == {'shard': 'new'}
    assert not Path(str(rank0) + '.tmp.done').exists()
    (tmp_path / 'checkpoint.th.1.old').touch()
    with pytest.raises(RuntimeError, match="Old checkpoint"):
        checkpoint.check_sharded_checkpoint(shard, rank0)


class _Wrapper:
    """flashy StateDictSource around a module."""
    def __init__(self, module: nn.Module):
        self.module = module

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state):
        self.module.load_state_dict(state)


def test_best_state_manager_copies_and_casts():
    model = nn.Linear(4, 2)
    manager = BestStateDictManager(dtype=torch.float16)
    manager.register('model', _Wrapper(model))
    assert manager.states['model']['weight'].dtype == torch.float16
    with torch.no_grad():
        model.weight.add_(1.)
    assert not torch.allclose(manager.states['model']['weight'].float(), model.weight, atol=1e-2)
    manager.update('model', _Wrapper(model))
    assert torch.allclose(manager.states['model']['weight'].float(), model.weight, atol=1e-2)
    with pytest.raises(ValueError, match="already present"):
        manager.register('model', _Wrapper(model))
    with pytest.raises(ValueError, match="missing"):
        manager.update('other', _Wrapper(model))
    # round trip through a state dict
    other = BestStateDictManager(dtype=torch.float16)
    other.register('model', _Wrapper(nn.Linear(4, 2)))
    other.load_state_dict(manager.state_dict())
    assert torch.equal(other.states['model']['weight'], manager.states['model']['weight'])
