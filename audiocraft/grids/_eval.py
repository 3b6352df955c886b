"""Shared opening of the evaluation grids (`*_eval`): objective metrics of released models.

An evaluation grid is frozen once generated: its XPs (signatures) are listed as symlinks in
`<dora dir>/grids/<grid name>`. Run it the first time, and after each change of the grid file, with
`REGEN=1 dora grid <name>` to compose the XPs from the definitions; without REGEN the grid relaunches
the XPs it generated last, so that an evaluation keeps its signatures while the code moves on.
"""
import os
import typing as tp

from ..environment import AudioCraftEnvironment
from ._recipes import FSDP

# MusicGen's and AudioGen's evaluation sampling (top-k 250), as in their released evaluations.
SAMPLING = {'generate.lm.use_sampling': True, 'generate.lm.top_k': 250, 'generate.lm.top_p': 0.}


def relaunch_or_regenerate(launcher: tp.Any, grid_name: str, gpus: int = 4) -> bool:
    """Bind the SLURM settings; without REGEN, relaunch the XPs of the last generation of
    `grid_name` and return False (nothing more to do); with REGEN set, return True: the caller
    composes the XPs."""
    from .. import train
    partitions = AudioCraftEnvironment.get_slurm_partitions(['team', 'global'])
    launcher.slurm_(gpus=gpus, partition=partitions)
    if os.environ.get('REGEN'):
        return True
    folder = train.main.dora.dir / 'grids' / grid_name
    # dora creates the (empty) grid folder before calling the explorer: no links = never generated.
    links = sorted(link for link in folder.iterdir() if link.is_symlink()) if folder.is_dir() else []
    if not links:
        raise RuntimeError(f"The evaluation grid {grid_name} was never generated here: run it once with "
                           f"`REGEN=1 dora grid {grid_name}` (and again after changing the grid).")
    with launcher.job_array():
        for link in links:
            launcher(train.main.get_xp_from_sig(link.name).argv)
    return False


def eval_opts(dset: str, evaluation: str, batch_size: int) -> tp.Dict[str, tp.Any]:
    """Overrides of an objective evaluation: the evaluate stage only, on `dset`, with the
    `objective_eval` metrics of `evaluation` (the config group, e.g. solver/musicgen/evaluation)."""
    return {
        'dset': dset,
        evaluation: 'objective_eval',
        'execute_only': 'evaluate',
        'dataset.evaluate.batch_size': batch_size,
        'dataset.num_workers': 4,
    }


def released_model_solver(launcher: tp.Any, solver: str) -> tp.Any:
    """A launcher bound to `solver` with the settings every released model is evaluated with (FSDP,
    no autocast); bind `continue_from` and the overrides of each XP on it."""
    bound = launcher.bind(solver=solver)
    bound.bind_(FSDP)
    return bound
