"""Smoke runs of the two `demo_synth` recipes (codec, then LM on its tokens) at tiny size.

Procedural clips are generated in a temporary folder; both runs go through `dora run` as in
docs/DEMO_MODEL.md, with the sizes and step counts overridden.
"""
import json
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

from audiocraft.data import synth_music

REPO = Path(__file__).parent.parent


def _run(args, dora_dir: Path) -> str:
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(dora_dir), PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'dora', 'run'] + args, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
def test_demo_synth_codec_then_lm(tmp_path):
    data = tmp_path / 'synth'
    synth_music.write_dataset(data, num_samples=6, seed=0, duration=3.0, valid_fraction=0.34)
    source = [f'datasource.{split}={data}/egs/{"train" if split == "train" else "valid"}'
              for split in ('train', 'valid', 'evaluate', 'generate')]
    small = ['optim.epochs=1', 'optim.updates_per_epoch=2', 'dataset.train.num_samples=4',
             'dataset.valid.num_samples=2', 'dataset.evaluate.num_samples=2', 'dataset.generate.num_samples=2']
    out = _run(['solver=compression/demo_synth', 'dataset.batch_size=2', 'dataset.generate.segment_duration=2']
               + source + small, tmp_path / 'dora')
    codec_sig = re.search(r"for XP (\w+)", out).group(1)
    out = _run(['solver=musicgen/demo_synth', f'compression_model_checkpoint=//sig/{codec_sig}',
                'transformer_lm.dim=32', 'transformer_lm.num_layers=1', 'dataset.batch_size=2',
                'dataset.segment_duration=2', 'generate.every=1', 'evaluate.every=1'] + source + small,
               tmp_path / 'dora')
    lm_sig = re.search(r"for XP (\w+)", out).group(1)
    history = json.loads((tmp_path / 'dora' / 'xps' / lm_sig / 'history.json').read_text())
    assert 0 < history[-1]['train']['ce'] < 10 and 'ce' in history[-1]['valid']
