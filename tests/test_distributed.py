"""Distributed training on CPU: `dora run -d` with 2 gloo workers matches a single process.

With a global batch of 4, each of the 2 workers sees 2 of the items a single process sees at the
same step, gradients are averaged across workers: losses and weights must match.
"""
import json
import os
from pathlib import Path
import re
import subprocess
import sys

import torch

REPO = Path(__file__).parent.parent

ARGS = ['solver=musicgen/debug', 'device=cpu', 'transformer_lm.dim=32', 'transformer_lm.num_heads=2',
        'transformer_lm.num_layers=1', 'dataset.num_workers=0', 'optim.epochs=2', 'optim.updates_per_epoch=3',
        'dataset.batch_size=4', 'dataset.segment_duration=1', 'dataset.train.shuffle=false',
        'dataset.train.num_samples=12', 'dataset.valid.num_samples=4', 'dataset.evaluate.num_samples=4',
        'dataset.generate.num_samples=2', 'logging.log_tensorboard=false', 'generate.every=100',
        'evaluate.every=100', 'generate.lm.unprompted_samples=false', 'generate.lm.prompted_samples=false',
        # T5 pads descriptions to the longest of a batch, which changes the cross attention:
        # dropping every description at training makes the batches independent of their split.
        'classifier_free_guidance.training_dropout=1']


def _dora_run(extra, dora_dir: Path) -> Path:
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(dora_dir), PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, '-m', 'dora', 'run'] + extra + ARGS, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    sig = re.search(r"for XP (\w+)", output).group(1)
    return dora_dir / 'xps' / sig


def test_two_workers_match_one_process(tmp_path):
    single = _dora_run([], tmp_path / 'single')
    ddp = _dora_run(['-d', '--ddp_workers', '2'], tmp_path / 'ddp')
    assert single.name == ddp.name  # distributed or not is not part of the XP signature
    assert 'Distributed init: 0/2' in (ddp / 'solver.log.0').read_text()
    assert 'Distributed init: 1/2' in (ddp / 'solver.log.1').read_text()
    hist_single = json.loads((single / 'history.json').read_text())
    hist_ddp = json.loads((ddp / 'history.json').read_text())
    assert len(hist_single) == len(hist_ddp) == 2
    for epoch_single, epoch_ddp in zip(hist_single, hist_ddp):
        for key in ('ce', 'grad_norm'):
            assert abs(epoch_single['train'][key] - epoch_ddp['train'][key]) < 1e-4, (key, epoch_single, epoch_ddp)
    state_single = torch.load(single / 'checkpoint.th', map_location='cpu', weights_only=False)['model']
    state_ddp = torch.load(ddp / 'checkpoint.th', map_location='cpu', weights_only=False)['model']
    for key, value in state_single.items():
        assert torch.allclose(value, state_ddp[key], atol=1e-5), key
