"""Dora grids: every grid composes its XPs and `--dry_run --init` registers them without SLURM."""
import importlib
import json
import os
from pathlib import Path
import subprocess
import sys

from dora.grid import RunGridArgs, run_grid
import pytest

REPO = Path(__file__).parent.parent

GRIDS = {
    'compression.debug': ('compression', 2),
    'compression.encodec_base_24khz': ('compression', 1),
    'compression.encodec_musicgen_32khz': ('compression', 1),
    'compression.encodec_audiogen_16khz': ('compression', 1),
    'musicgen.musicgen_base_32khz': ('musicgen', 3),
    'musicgen.musicgen_melody_32khz': ('musicgen', 8),
    'musicgen.musicgen_base_cached_32khz': ('musicgen', 10),  # the cache-writing phase
    'musicgen.musicgen_clapemb_32khz': ('musicgen', 4),
    'musicgen.musicgen_stereo_finetune_32khz': ('musicgen', 3),
    'audiogen.audiogen_base_16khz': ('audiogen', 1),
    'magnet.magnet_32khz': ('magnet', 2),
    'magnet.audio_magnet_16khz': ('audio_magnet', 2),
}
EVAL_GRIDS = {
    'musicgen.musicgen_pretrained_32khz_eval': ({'musicgen'}, 5),
    'audiogen.audiogen_pretrained_16khz_eval': ({'audiogen'}, 1),
    'magnet.magnet_pretrained_32khz_eval': ({'magnet'}, 4),
    'magnet.audio_magnet_pretrained_16khz_eval': ({'audio_magnet'}, 2),
}


@pytest.fixture
def main(tmp_path, monkeypatch):
    monkeypatch.setenv('AUDIOCRAFT_DORA_DIR', str(tmp_path))
    from audiocraft import train
    monkeypatch.setattr(train.main.dora, 'dir', tmp_path)
    # compose the XPs in this process rather than in a pool of 4 processes per grid (faster here;
    # the pool is exercised by the command line test below).
    monkeypatch.setattr(train.main, '_slow', False)
    return train.main


def test_every_grid_lists_its_xps(main, tmp_path):
    args = RunGridArgs(dry_run=True, init=True, monitor=False, silent=True)
    for name, (solver, count) in GRIDS.items():
        explorer = importlib.import_module(f'audiocraft.grids.{name}').explorer
        sheeps = run_grid(main, explorer, name, args=args)
        assert len(sheeps) == count, name
        assert len({sheep.xp.sig for sheep in sheeps}) == count
        for sheep in sheeps:
            assert sheep.xp.cfg.solver == solver
            assert sheep.job is None  # nothing was scheduled
            argv = json.loads((tmp_path / 'xps' / sheep.xp.sig / '.argv.json').read_text())
            assert argv == sheep.xp.argv
        # a signature can be referenced (//sig/...) and gives back the same XP
        assert main.get_xp_from_sig(sheeps[-1].xp.sig).sig == sheeps[-1].xp.sig


def test_dora_grid_command(tmp_path):
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(tmp_path), PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, '-m', 'dora', 'grid', 'musicgen.musicgen_base_32khz', '--dry_run',
                           '--init'], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Monitoring Grid musicgen.musicgen_base_32khz' in proc.stdout
    for label in ('32gpus', '64gpus', '96gpus'):
        assert f'label={label}' in proc.stdout
    assert len(list((tmp_path / 'xps').glob('*/.argv.json'))) == 3
    proc = subprocess.run([sys.executable, '-m', 'dora', 'grid', 'musicgen.no_such_grid', '--dry_run'],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert 'No grid file' in proc.stdout + proc.stderr
    assert 'musicgen.musicgen_base_32khz' in proc.stdout + proc.stderr


def test_eval_grids_regenerate_then_relaunch(main, tmp_path, monkeypatch):
    """REGEN=1 composes the evaluate-only XPs of released models; without REGEN the grid relaunches
    the same XPs (and says to use REGEN=1 when it was never generated)."""
    args = RunGridArgs(dry_run=True, init=True, monitor=False, silent=True)
    for name, (solvers, count) in EVAL_GRIDS.items():
        explorer = importlib.import_module(f'audiocraft.grids.{name}').explorer
        monkeypatch.delenv('REGEN', raising=False)
        with pytest.raises(RuntimeError, match="REGEN=1"):
            run_grid(main, explorer, name, args=args)
        monkeypatch.setenv('REGEN', '1')
        sheeps = run_grid(main, explorer, name, args=args)
        assert len({sheep.xp.sig for sheep in sheeps}) == len(sheeps) == count, name
        for sheep in sheeps:
            cfg = sheep.xp.cfg
            assert cfg.solver in solvers and cfg.execute_only == 'evaluate'
            assert cfg.continue_from.startswith('//pretrained/facebook/')
            assert cfg.evaluate.metrics.fad and cfg.evaluate.metrics.kld or cfg.evaluate.metrics.chroma_cosine
            assert cfg.metrics.fad.model == 'vggish' and cfg.dataset.evaluate.num_samples in (None, 1000)
        for sheep in sheeps:  # what a real (not dry) launch leaves in the grid folder
            (tmp_path / 'grids' / name / sheep.xp.sig).symlink_to(sheep.xp.folder)
        monkeypatch.delenv('REGEN')
        again = run_grid(main, explorer, name, args=args)
        assert sorted(s.xp.sig for s in again) == sorted(s.xp.sig for s in sheeps)


def test_cached_grid_lists_trainings_once_the_cache_is_written(main, monkeypatch):
    grid = importlib.import_module('audiocraft.grids.musicgen.musicgen_base_cached_32khz')
    monkeypatch.setattr(grid, 'CACHE_WRITTEN', True)
    args = RunGridArgs(dry_run=True, init=True, monitor=False, silent=True)
    sheeps = run_grid(main, grid.explorer, 'musicgen.musicgen_base_cached_32khz', args=args)
    assert len(sheeps) == 3
    assert all(sheep.xp.cfg.cache.path == grid.CACHE_PATH and not sheep.xp.cfg.cache.write for sheep in sheeps)
