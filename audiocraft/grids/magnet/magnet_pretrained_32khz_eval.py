"""Objective metrics (FAD, KLD, CLAP text consistency) of the released MAGNeT music models on
MusicCaps, with the evaluate stage only:

    REGEN=1 dora grid magnet.magnet_pretrained_32khz_eval --dry_run --init

REGEN=1 composes the XPs; later runs without it relaunch the same XPs (see grids/_eval.py).
docs/METRICS.md says where to get the weights of each metric model.
"""
from ..musicgen._explorers import GenerationEvalExplorer
from .._eval import eval_opts, released_model_solver, relaunch_or_regenerate

GRID = 'magnet.magnet_pretrained_32khz_eval'


@GenerationEvalExplorer
def explorer(launcher):
    if not relaunch_or_regenerate(launcher, GRID):
        return
    opts = eval_opts('audio/musiccaps_32khz', 'solver/musicgen/evaluation', batch_size=32)
    with launcher.job_array():
        base = released_model_solver(launcher, 'magnet/magnet_32khz')
        for name in ('small', 'medium'):
            for seconds in (10, 30):
                # MAGNeT's decoding schedule (temperature, top-p, steps) comes from the solver config.
                base({'continue_from': f'//pretrained/facebook/magnet-{name}-{seconds}secs'}, opts)
