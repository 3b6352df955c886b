"""A training run killed with SIGKILL in the middle of an epoch resumes from its last checkpoint."""
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import torch

REPO = Path(__file__).parent.parent

ARGS = ['solver=musicgen/debug', 'device=cpu', 'transformer_lm.dim=32', 'transformer_lm.num_heads=2',
        'transformer_lm.num_layers=1', 'dataset.num_workers=0', 'optim.epochs=3', 'optim.updates_per_epoch=80',
        'dataset.batch_size=2', 'dataset.segment_duration=1', 'dataset.train.num_samples=20',
        'dataset.valid.num_samples=2', 'dataset.evaluate.num_samples=2', 'dataset.generate.num_samples=2',
        'logging.log_tensorboard=false', 'generate.every=100', 'evaluate.every=100',
        'generate.lm.unprompted_samples=false', 'generate.lm.prompted_samples=false']


def _start(dora_dir: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(dora_dir), PYTHONWARNINGS='ignore')
    return subprocess.Popen([sys.executable, '-m', 'dora', 'run'] + ARGS, cwd=REPO, env=env,
                            stdout=open(log, 'w'), stderr=subprocess.STDOUT, start_new_session=True)


def test_sigkill_mid_epoch_then_resume(tmp_path):
    dora_dir = tmp_path / 'dora'
    proc = _start(dora_dir, tmp_path / 'first.log')
    deadline = time.time() + 300
    checkpoints = []
    while not checkpoints:
        assert proc.poll() is None, (tmp_path / 'first.log').read_text()[-3000:]
        assert time.time() < deadline, "no checkpoint written in time"
        checkpoints = list(dora_dir.glob('xps/*/checkpoint.th'))
        time.sleep(0.05)
    # epoch 1 is saved and epoch 2 is training: kill without any chance of cleanup.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    xp_folder = checkpoints[0].parent
    state = torch.load(xp_folder / 'checkpoint.th', map_location='cpu', weights_only=False)
    # Normally killed during epoch 2; on a starved machine the poll above may only see the
    # checkpoint late, after epoch 2 was saved too. Either way the run was killed mid-training
    # (epoch 3 is never complete here: it would end the run) and must resume from its checkpoint.
    assert 1 <= len(state['history']) < 3, "the run finished before it could be killed"
    first_epoch = state['history'][0]

    proc = _start(dora_dir, tmp_path / 'second.log')
    assert proc.wait(timeout=400) == 0, (tmp_path / 'second.log').read_text()[-3000:]
    output = (tmp_path / 'second.log').read_text()
    assert 'Loading existing checkpoint' in output and 'Replaying past metrics' in output
    assert 'Train | Epoch 1 |' not in output  # epoch 1 was not trained again
    history = json.loads((xp_folder / 'history.json').read_text())
    assert len(history) == 3
    assert history[0] == json.loads(json.dumps(first_epoch))
    final = torch.load(xp_folder / 'checkpoint.th', map_location='cpu', weights_only=False)
    assert len(final['history']) == 3
    assert not list(xp_folder.glob('*.tmp'))
