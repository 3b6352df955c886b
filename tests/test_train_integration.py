"""End to end training with the real commands: `dora run` / `python -m audiocraft.train`.

A tiny EnCodec is trained on the example dataset, then MusicGen, AudioGen and MAGNeT LMs on its
tokens (`compression_model_checkpoint=//sig/<compression XP>`); the trained codec and LM are
exported and loaded back with `MusicGen.get_pretrained(<folder>)` to generate audio.
"""
import json
import math
import os
from pathlib import Path
import re
import subprocess
import sys
import typing as tp

import pytest
import torch

REPO = Path(__file__).parent.parent

COMMON = ['dset=audio/example', 'device=cpu', 'dataset.num_workers=0', 'optim.epochs=1',
          'logging.log_tensorboard=false', 'dataset.train.num_samples=10', 'dataset.valid.num_samples=10',
          'dataset.evaluate.num_samples=10', 'dataset.generate.num_samples=10']
COMPRESSION = ['solver=compression/debug', 'rvq.n_q=2', 'rvq.bins=48', 'sample_rate=16000', 'channels=1',
               'optim.updates_per_epoch=2', 'dataset.batch_size=2', 'dataset.generate.batch_size=5',
               'dataset.generate.segment_duration=1']
LM = ['sample_rate=16000', 'channels=1', 'transformer_lm.n_q=2', 'transformer_lm.card=48', 'transformer_lm.dim=32',
      'transformer_lm.num_heads=2', 'transformer_lm.num_layers=1', 'optim.updates_per_epoch=2',
      'dataset.batch_size=2', 'dataset.segment_duration=1']


def run_command(cmd: tp.List[str], dora_dir: Path, timeout: float = 300) -> str:
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(dora_dir), PYTHONWARNINGS='ignore')
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    return output


def xp_sig(output: str) -> str:
    match = re.search(r"for XP (\w+)", output)
    assert match, output[-3000:]
    return match.group(1)


@pytest.fixture(scope="module")
def dora_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dora")


@pytest.fixture(scope="module")
def compression_xp(dora_dir) -> Path:
    out = run_command([sys.executable, '-m', 'dora', 'run'] + COMPRESSION + COMMON, dora_dir)
    return dora_dir / 'xps' / xp_sig(out)


def check_xp(folder: Path, stages=('train', 'valid', 'evaluate', 'generate')) -> dict:
    assert (folder / 'checkpoint.th').exists()
    history = json.loads((folder / 'history.json').read_text())
    assert len(history) == 1 and set(stages) <= set(history[0])
    state = torch.load(folder / 'checkpoint.th', map_location='cpu', weights_only=False)
    assert {'model', 'optimizer', 'best_state', 'history', 'xp.cfg'} <= set(state)
    assert state['history'] == history
    return history[0]


def test_compression_training(compression_xp):
    metrics = check_xp(compression_xp)
    assert {'l1', 'bandwidth', 'sisnr'} <= set(metrics['train'])
    assert 'sisnr' in metrics['evaluate']
    # 10 generate items: 10 reconstructions and their references
    assert len(list((compression_xp / 'samples' / '1').glob('*.json'))) == 10
    assert len(list((compression_xp / 'samples' / 'reference').glob('*.mp3'))) == 10


@pytest.fixture(scope="module")
def musicgen_xp(dora_dir, compression_xp) -> Path:
    out = run_command([sys.executable, '-m', 'audiocraft.train', 'solver=musicgen/debug',
                       f'compression_model_checkpoint=//sig/{compression_xp.name}'] + LM + COMMON, dora_dir)
    return dora_dir / 'xps' / xp_sig(out)


def test_musicgen_training(musicgen_xp):
    metrics = check_xp(musicgen_xp)
    for stage in ('train', 'valid'):
        assert {'ce', 'ppl', 'ce_q1', 'ce_q2'} <= set(metrics[stage])
        assert 0 < metrics[stage]['ce'] < 10
    assert 'rtf' in metrics['generate']
    samples = [json.loads(p.read_text()) for p in (musicgen_xp / 'samples' / '1').glob('*.json')]
    # sample ids hash the conditions (and prompt): unprompted samples of a same description share one
    unprompted = [s for s in samples if s['prompt'] is None]
    prompted = [s for s in samples if s['prompt'] is not None]
    assert len(unprompted) == len({s['conditioning']['description'] for s in unprompted}) >= 2
    assert len(prompted) >= len(unprompted)
    assert all(Path(s['path']).exists() and s['reference'] is not None for s in samples)


def test_continue_from_sig_with_execute_only(dora_dir, compression_xp, musicgen_xp):
    out = run_command([sys.executable, '-m', 'dora', 'run', 'solver=musicgen/debug',
                       f'compression_model_checkpoint=//sig/{compression_xp.name}',
                       f'continue_from=//sig/{musicgen_xp.name}', 'execute_only=evaluate',
                       'evaluate.metrics.base=true'] + LM + COMMON, dora_dir)
    assert 'Continuing from provided checkpoint' in out
    folder = dora_dir / 'xps' / xp_sig(out)
    assert folder != musicgen_xp
    history = json.loads((folder / 'history.json').read_text())
    assert list(history[-1]) == ['evaluate'] and 'ce' in history[-1]['evaluate']
    assert not (folder / 'checkpoint.th').exists()  # evaluation only, nothing to save


def _compact_random_state(module: torch.nn.Module) -> dict:
    """A random state dict of `module` whose large tensors are expanded from one row: the released
    layout (so the real loaders read it) in a file of a few MB."""
    torch.manual_seed(0)
    state = {}
    for key, value in module.state_dict().items():
        row = torch.randn(value.shape[-1]) * 0.02 if value.dim() else torch.randn(())
        state[key] = row.expand(value.shape) if value.numel() > 1e6 else torch.randn(value.shape) * 0.02
    return state


def _compact_clap_checkpoint(path: Path) -> None:
    """A random HTSAT-tiny CLAP (stand-in roberta-base text branch) in laion_clap's checkpoint layout,
    its tensors over 10k values expanded from their (cloned) first row: a file of about 1 MB."""
    from transformers import RobertaConfig
    from audiocraft.modules.clap import CLAP, HTSAT_PRESETS
    torch.manual_seed(0)
    clap = CLAP(HTSAT_PRESETS['HTSAT-tiny'], RobertaConfig.from_pretrained('roberta-base'))
    state = {}
    for key, value in clap.state_dict().items():
        if value.numel() > 10_000:
            value = value[(0,) * (value.dim() - 1)].clone().expand(value.shape)
        state[f'module.{key}'] = value
    torch.save({'epoch': 1, 'state_dict': state}, path)


def test_execute_only_evaluate_writes_generation_metrics(dora_dir, tmp_path, compression_xp, musicgen_xp):
    from audiocraft.metrics.passt import PasstTagger
    from audiocraft.metrics.vggish import VGGish
    torch.save(_compact_random_state(VGGish(postprocess=False)), tmp_path / 'vggish.pth')
    torch.save(_compact_random_state(PasstTagger(input_tdim=998).net), tmp_path / 'passt.pt')
    _compact_clap_checkpoint(tmp_path / 'clap.pt')
    out = run_command([sys.executable, '-m', 'dora', 'run', 'solver=musicgen/debug',
                       f'compression_model_checkpoint=//sig/{compression_xp.name}',
                       f'continue_from=//sig/{musicgen_xp.name}', 'execute_only=evaluate',
                       'evaluate.metrics.fad=true', 'evaluate.metrics.kld=true', 'evaluate.metrics.chroma_cosine=true',
                       f'metrics.fad.vggish.model_path={tmp_path}/vggish.pth', 'metrics.fad.vggish.postprocess=false',
                       f'metrics.kld.passt.model_path={tmp_path}/passt.pt', 'metrics.kld.passt.pretrained_length=10',
                       'metrics.chroma_cosine.chroma_base.radix2_exp=10', 'evaluate.metrics.text_consistency=true',
                       f'metrics.text_consistency.clap.model_path={tmp_path}/clap.pt',
                       'metrics.text_consistency.clap.model_arch=HTSAT-tiny'] + LM + COMMON, dora_dir)
    history = json.loads((dora_dir / 'xps' / xp_sig(out) / 'history.json').read_text())
    evaluate = history[-1]['evaluate']
    assert {'fad', 'kld', 'kld_pq', 'kld_qp', 'kld_both', 'chroma_cosine', 'text_consistency'} <= set(evaluate)
    assert all(math.isfinite(evaluate[key]) for key in ('fad', 'kld', 'chroma_cosine', 'text_consistency'))
    assert -1 <= evaluate['text_consistency'] <= 1


def test_audiogen_training(dora_dir, compression_xp):
    out = run_command([sys.executable, '-m', 'dora', 'run', 'solver=audiogen/debug',
                       'codebooks_pattern.delay.delays=[0,1]',
                       f'compression_model_checkpoint=//sig/{compression_xp.name}'] + LM + COMMON, dora_dir)
    assert 'AudioGenSolver' in out
    metrics = check_xp(dora_dir / 'xps' / xp_sig(out))
    assert 'ce' in metrics['valid']


def test_magnet_training(dora_dir, compression_xp):
    out = run_command([sys.executable, '-m', 'dora', 'run', 'solver=magnet/magnet_32khz',
                       'model/lm/model_scale=xsmall', 'conditioners.description.t5.name=t5-small',
                       'generate.lm.decoding_steps=[2,2]', 'autocast=false', 'optim.ema.use=false',
                       f'compression_model_checkpoint=//sig/{compression_xp.name}'] + LM + COMMON, dora_dir)
    assert 'MagnetSolver' in out
    metrics = check_xp(dora_dir / 'xps' / xp_sig(out))
    assert {'ce', 'ce_q1', 'ce_q2'} <= set(metrics['train'])


def test_export_and_generate_with_get_pretrained(tmp_path, compression_xp, musicgen_xp):
    from audiocraft.models import MusicGen
    from audiocraft.utils.export import export_encodec, export_lm
    folder = tmp_path / 'my_musicgen'
    export_encodec(compression_xp / 'checkpoint.th', folder / 'compression_state_dict.bin')
    export_lm(musicgen_xp / 'checkpoint.th', folder / 'state_dict.bin')
    model = MusicGen.get_pretrained(str(folder), device='cpu')
    assert model.sample_rate == 16000 and model.max_duration == 1
    model.set_generation_params(duration=0.4, use_sampling=False)
    wav = model.generate(['warm lo-fi piano', 'drums'])
    assert wav.shape == (2, 1, 6400) and torch.isfinite(wav).all()
    # the exported LM holds the best state of the training run
    best = torch.load(musicgen_xp / 'checkpoint.th', map_location='cpu', weights_only=False)['best_state']['model']
    lm_state = model.lm.state_dict()
    assert all(torch.allclose(lm_state[k].float(), v.float()) for k, v in best.items())


def test_unknown_solver_and_missing_dataset_errors(tmp_path, monkeypatch):
    import omegaconf
    from audiocraft import train
    from audiocraft.solvers import builders
    with pytest.raises(ValueError, match="Unknown solver 'nope'.*musicgen"):
        builders.get_solver(omegaconf.OmegaConf.create({'solver': 'nope'}))
    monkeypatch.setenv('AUDIOCRAFT_DORA_DIR', str(tmp_path))
    monkeypatch.setattr(train.main.dora, 'dir', tmp_path)
    xp = train.main.get_xp(COMPRESSION + COMMON + [f'datasource.train={tmp_path}/missing'])
    with xp.enter(), pytest.raises(FileNotFoundError, match="missing.*data.jsonl"):
        train.get_solver(xp.cfg)
