"""Training faults: a NaN loss, a full disk during a checkpoint save, a crashed data-loader worker."""
import errno
import os
from pathlib import Path
import signal

import dora
import omegaconf
import pytest
import torch
from hydra import compose, initialize_config_dir

from audiocraft.solvers.base import DataLoadingError, NonFiniteLossError, guarded_batches
from audiocraft.solvers.compression import CompressionSolver
from audiocraft.utils import checkpoint

CONFIG_DIR = Path(__file__).parent.parent / "config"
OVERRIDES = ['solver=compression/debug', 'device=cpu', 'seanet.ratios=[4,4]', 'seanet.lstm=0', 'rvq.n_q=2',
             'rvq.bins=16', 'adversarial.adversaries=[]', 'losses.adv=0', 'losses.feat=0', 'losses.msspec=0',
             'mel.n_mels=16', 'mel.n_fft=256', 'mel.win_length=256', 'mel.hop_length=64', 'sisnr.segment=null',
             'optim.epochs=1', 'optim.updates_per_epoch=2', 'logging.log_updates=0']


class NaNCompressionSolver(CompressionSolver):
    """The compression solver fed a clean batch, then one holding a NaN."""

    def build_dataloaders(self):
        g = torch.Generator().manual_seed(0)
        clean = 0.1 * torch.randn(2, 1, 1600, generator=g)
        broken = clean.clone()
        broken[0, 0, 100] = float('nan')
        self.dataloaders = {'train': [clean, broken], 'valid': [clean], 'evaluate': [clean],
                            'generate': [(clean, [None, None])]}


def test_nan_loss_is_reported_with_its_step_and_not_trained_on(tmp_path):
    torch.manual_seed(0)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base='1.1'):
        cfg = compose('config', overrides=OVERRIDES)
    xp = dora.XP(dora=dora.conf.DoraConfig(dir=tmp_path, exclude=[]), cfg=cfg, argv=[], sig='nanloss0')
    with xp.enter():
        solver = NaNCompressionSolver(cfg)
        weights = []
        real_check = solver.check_finite_losses

        def check(losses, step):
            weights.append({k: v.detach().clone() for k, v in solver.model.named_parameters()})
            real_check(losses, step)
        solver.check_finite_losses = check  # type: ignore
        with pytest.raises(NonFiniteLossError, match=r"epoch 1, train step 1\b.*not updated"):
            solver.run_epoch()
    # The NaN never reached the trained weights (the optimizer did not step on it).
    after = dict(solver.model.named_parameters())
    assert all(torch.equal(after[k], weights[1][k]) for k in after)
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in after)  # the clean step did train
    assert all(torch.isfinite(v).all() for v in after.values())


def test_full_disk_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'checkpoint.th'
    cfg = omegaconf.OmegaConf.create({'solver': 'musicgen'})
    checkpoint.save_checkpoint({'epoch': 1, 'model': {'w': torch.ones(1000)}, 'xp.cfg': cfg}, path)

    def disk_full_save(obj, f, *args, **kwargs):
        f.write(b'\0' * 4096)  # part of the data made it to disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, 'save', disk_full_save)
    with pytest.raises(OSError, match='No space left on device.*previous checkpoint.*unchanged') as info:
        checkpoint.save_checkpoint({'epoch': 2, 'model': {'w': torch.zeros(1000)}, 'xp.cfg': cfg}, path)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    state = checkpoint.load_checkpoint(path)
    assert state['epoch'] == 1 and torch.equal(state['model']['w'], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ['checkpoint.th']  # no partial temporary file left


class _CrashingDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 0:
            # Crashing on the first batch: the main process is then waiting inside the loader,
            # where torch reports the dead worker (a later crash can surface anywhere).
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies as if killed by the OOM killer
        return torch.full((2,), float(index))


def test_crashed_data_loader_worker_gives_a_clear_error():
    loader = torch.utils.data.DataLoader(_CrashingDataset(), batch_size=1, num_workers=1)
    seen = []
    with pytest.raises(DataLoadingError) as info:
        for batch in guarded_batches(loader, 'train', 3):
            seen.append(batch)
    message = str(info.value)
    assert 'batch 0 of the train stage (epoch 3)' in message
    assert 'worker process died' in message and 'dataset.num_workers=0' in message
    assert seen == []


def test_guarded_batches_passes_batches_through():
    assert list(guarded_batches([1, 2, 3], 'valid', 1)) == [1, 2, 3]

    def failing():
        yield 1
        raise ValueError("bad file /data/x.wav")
    with pytest.raises(DataLoadingError, match=r"batch 1 of the valid stage.*ValueError: bad file /data/x.wav"):
        list(guarded_batches(failing(), 'valid', 1))
