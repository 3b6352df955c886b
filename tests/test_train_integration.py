"""End to end training with the real command (`dora -v run --clear`): AudioCraft's integration recipe.

As AudioCraft's Makefile target `tests_integ` writes it: a tiny EnCodec (`solver=compression/debug`),
then `musicgen/debug`, `audiogen/debug` and `magnet/magnet_32khz` on its tokens
(`compression_model_checkpoint=//sig/<compression XP>`, `transformer_lm.n_q=2 card=48 dim=16`),
on CPU with tiny sample counts. Each LM is then exported with the codec and loaded back with
`get_pretrained` to generate audio. Only the MAGNeT stage is made smaller (see MAGNET_SMALLER).
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

from audiocraft.utils.safe_load import safe_torch_load

REPO = Path(__file__).parent.parent
pytestmark = pytest.mark.slow

# AudioCraft's Makefile target `tests_integ`, argument for argument (`make test-integ` runs it as is).
INTEG = ['device=cpu', 'dataset.num_workers=0', 'optim.epochs=1', 'dataset.train.num_samples=10',
         'dataset.valid.num_samples=10', 'dataset.evaluate.num_samples=10', 'dataset.generate.num_samples=2',
         'sample_rate=16000', 'logging.level=DEBUG']
INTEG_COMPRESSION = ['solver=compression/debug', 'rvq.n_q=2', 'rvq.bins=48', 'checkpoint.save_last=true']
# The signature AudioCraft's Makefile notes for that compression XP: the same command, the same XP.
AUDIOCRAFT_COMPRESSION_SIG = '5091833e'


def integ_lm(solver: str, compression_sig: str) -> tp.List[str]:
    """The Makefile's LM stages, on the tokens of the compression XP."""
    return [f'solver={solver}', 'dset=audio/example', f'compression_model_checkpoint=//sig/{compression_sig}',
            'transformer_lm.n_q=2', 'transformer_lm.card=48', 'transformer_lm.dim=16', 'checkpoint.save_last=false']


# Ours on top of the recipe: keep the last checkpoint, to export the LM and load it back.
EXPORTABLE = ['checkpoint.save_last=true']
# MAGNeT at the recipe's sizes (30 s segments, a 24-layer LM, float16 autocast) takes over ten
# minutes on two CPU cores; the same stages, smaller:
MAGNET_SMALLER = ['model/lm/model_scale=xsmall', 'dataset.segment_duration=2', 'autocast=false',
                  'generate.lm.decoding_steps=[2,2]']


def dora_run(args: tp.List[str], dora_dir: Path) -> str:
    """`python -m dora -v run --clear ARGS`, as the Makefile runs each stage."""
    return run_command([sys.executable, '-m', 'dora', '-v', 'run', '--clear'] + args, dora_dir)


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
    out = dora_run(INTEG + INTEG_COMPRESSION, dora_dir)
    return dora_dir / 'xps' / xp_sig(out)


def check_xp(folder: Path, stages=('train', 'valid', 'evaluate', 'generate')) -> dict:
    assert (folder / 'checkpoint.th').exists()
    history = json.loads((folder / 'history.json').read_text())
    assert len(history) == 1 and set(stages) <= set(history[0])
    state = safe_torch_load(folder / 'checkpoint.th')  # what our solvers write loads safely
    assert {'model', 'optimizer', 'best_state', 'history', 'xp.cfg'} <= set(state)
    assert state['history'] == history
    return history[0]


def test_compression_training(compression_xp):
    assert compression_xp.name == AUDIOCRAFT_COMPRESSION_SIG
    metrics = check_xp(compression_xp)
    assert {'l1', 'bandwidth', 'sisnr'} <= set(metrics['train'])
    assert 'sisnr' in metrics['evaluate']
    # 2 generate items: 2 reconstructions and their references
    assert len(list((compression_xp / 'samples' / '1').glob('*.json'))) == 2
    assert len(list((compression_xp / 'samples' / 'reference').glob('*.mp3'))) == 2


@pytest.fixture(scope="module")
def musicgen_xp(dora_dir, compression_xp) -> Path:
    out = dora_run(INTEG + integ_lm('musicgen/debug', compression_xp.name) + EXPORTABLE, dora_dir)
    assert 'MusicGenSolver' in out
    return dora_dir / 'xps' / xp_sig(out)


@pytest.fixture(scope="module")
def audiogen_xp(dora_dir, compression_xp) -> Path:
    # AudioCraft's audiogen/debug models the codebooks in parallel: any n_q works.
    out = dora_run(INTEG + integ_lm('audiogen/debug', compression_xp.name) + EXPORTABLE, dora_dir)
    assert 'AudioGenSolver' in out
    return dora_dir / 'xps' / xp_sig(out)


@pytest.fixture(scope="module")
def magnet_xp(dora_dir, compression_xp) -> Path:
    out = dora_run(INTEG + integ_lm('magnet/magnet_32khz', compression_xp.name) + EXPORTABLE + MAGNET_SMALLER,
                   dora_dir)
    assert 'MagnetSolver' in out
    return dora_dir / 'xps' / xp_sig(out)


def test_musicgen_training(musicgen_xp):
    metrics = check_xp(musicgen_xp)
    for stage in ('train', 'valid'):
        assert {'ce', 'ppl', 'ce_q1', 'ce_q2'} <= set(metrics[stage])
        assert 0 < metrics[stage]['ce'] < 10
    assert 'rtf' in metrics['generate']
    samples = [json.loads(p.read_text()) for p in (musicgen_xp / 'samples' / '1').glob('*.json')]
    assert any(s['prompt'] is None for s in samples) and any(s['prompt'] is not None for s in samples)
    assert all(Path(s['path']).exists() and s['reference'] is not None for s in samples)


def test_audiogen_training(audiogen_xp):
    metrics = check_xp(audiogen_xp)
    assert {'ce', 'ce_q1', 'ce_q2'} <= set(metrics['valid'])


def test_magnet_training(magnet_xp):
    metrics = check_xp(magnet_xp)
    assert {'ce', 'ce_q1', 'ce_q2'} <= set(metrics['train'])


def test_continue_from_sig_with_execute_only(dora_dir, compression_xp, musicgen_xp):
    out = dora_run(INTEG + integ_lm('musicgen/debug', compression_xp.name) + EXPORTABLE + [
        f'continue_from=//sig/{musicgen_xp.name}', 'execute_only=evaluate', 'evaluate.metrics.base=true'], dora_dir)
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
    out = dora_run(INTEG + integ_lm('musicgen/debug', compression_xp.name) + EXPORTABLE + [
        f'continue_from=//sig/{musicgen_xp.name}', 'execute_only=evaluate',
        'evaluate.metrics.fad=true', 'evaluate.metrics.kld=true', 'evaluate.metrics.chroma_cosine=true',
        f'metrics.fad.vggish.model_path={tmp_path}/vggish.pth', 'metrics.fad.vggish.postprocess=false',
        f'metrics.kld.passt.model_path={tmp_path}/passt.pt', 'metrics.kld.passt.pretrained_length=10',
        'metrics.chroma_cosine.chroma_base.radix2_exp=10', 'evaluate.metrics.text_consistency=true',
        f'metrics.text_consistency.clap.model_path={tmp_path}/clap.pt',
        'metrics.text_consistency.clap.model_arch=HTSAT-tiny'], dora_dir)
    history = json.loads((dora_dir / 'xps' / xp_sig(out) / 'history.json').read_text())
    evaluate = history[-1]['evaluate']
    assert {'fad', 'kld', 'kld_pq', 'kld_qp', 'kld_both', 'chroma_cosine', 'text_consistency'} <= set(evaluate)
    assert all(math.isfinite(evaluate[key]) for key in ('fad', 'kld', 'chroma_cosine', 'text_consistency'))
    assert -1 <= evaluate['text_consistency'] <= 1


def _export(xp: Path, compression_xp: Path, folder: Path) -> Path:
    from audiocraft.utils.export import export_encodec, export_lm
    export_encodec(compression_xp / 'checkpoint.th', folder / 'compression_state_dict.bin')
    return export_lm(xp / 'checkpoint.th', folder / 'state_dict.bin')


def _assert_holds_best_state(model, xp: Path) -> None:
    best = safe_torch_load(xp / 'checkpoint.th')['best_state']['model']
    lm_state = model.lm.state_dict()
    assert all(torch.allclose(lm_state[k].float(), v.float()) for k, v in best.items())


def test_export_musicgen_and_generate_with_get_pretrained(tmp_path, compression_xp, musicgen_xp):
    from audiocraft.models import MusicGen
    lm_file = _export(musicgen_xp, compression_xp, tmp_path / 'my_musicgen')
    model = MusicGen.get_pretrained(str(tmp_path / 'my_musicgen'), device='cpu')
    assert model.sample_rate == 16000 and model.max_duration == 5
    model.set_generation_params(duration=0.4, use_sampling=False)
    wav = model.generate(['warm lo-fi piano', 'drums'])
    assert wav.shape == (2, 1, 6400) and torch.isfinite(wav).all()
    _assert_holds_best_state(model, musicgen_xp)
    # The path of the LM file works too: the codec is read from beside it.
    by_file = MusicGen.get_pretrained(str(lm_file), device='cpu')
    by_file.set_generation_params(duration=0.4, use_sampling=False)
    assert torch.equal(by_file.generate(['warm lo-fi piano', 'drums']), wav)


def test_export_audiogen_and_generate_with_get_pretrained(tmp_path, compression_xp, audiogen_xp):
    from audiocraft.models import AudioGen
    _export(audiogen_xp, compression_xp, tmp_path / 'my_audiogen')
    model = AudioGen.get_pretrained(str(tmp_path / 'my_audiogen'), device='cpu')
    assert model.sample_rate == 16000 and model.lm.num_codebooks == 2
    model.set_generation_params(duration=0.4, use_sampling=False)
    wav = model.generate(['dog barking'])
    assert wav.shape == (1, 1, 6400) and torch.isfinite(wav).all()
    _assert_holds_best_state(model, audiogen_xp)


def test_export_magnet_and_generate_with_get_pretrained(tmp_path, compression_xp, magnet_xp):
    from audiocraft.models import MAGNeT, MusicGen
    _export(magnet_xp, compression_xp, tmp_path / 'my_magnet')
    model = MAGNeT.get_pretrained(str(tmp_path / 'my_magnet'), device='cpu')
    # Filled in from dataset.segment_duration and masking.span_len (the configs hold 0 / -1).
    assert (model.lm.segment_duration, model.lm.span_len) == (2, 3)
    model.set_generation_params(use_sampling=False, decoding_steps=[2, 2])
    wav = model.generate(['disco beat'])
    assert wav.shape[:2] == (1, 1) and 31000 <= wav.shape[-1] <= 32000 and torch.isfinite(wav).all()
    _assert_holds_best_state(model, magnet_xp)
    with pytest.raises(ValueError, match="MAGNeT.get_pretrained"):
        MusicGen.get_pretrained(str(tmp_path / 'my_magnet'), device='cpu')


def test_unknown_solver_and_missing_dataset_errors(tmp_path, monkeypatch):
    import omegaconf
    from audiocraft import train
    from audiocraft.solvers import builders
    with pytest.raises(ValueError, match="Unknown solver 'nope'.*musicgen"):
        builders.get_solver(omegaconf.OmegaConf.create({'solver': 'nope'}))
    monkeypatch.setenv('AUDIOCRAFT_DORA_DIR', str(tmp_path))
    monkeypatch.setattr(train.main.dora, 'dir', tmp_path)
    xp = train.main.get_xp(INTEG_COMPRESSION + INTEG + [f'datasource.train={tmp_path}/missing'])
    with xp.enter(), pytest.raises(FileNotFoundError, match="missing.*data.jsonl"):
        train.get_solver(xp.cfg)
