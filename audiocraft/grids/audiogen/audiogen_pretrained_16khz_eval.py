"""Objective metrics (FAD, KLD, CLAP text consistency) of the released AudioGen on AudioCaps,
with the evaluate stage only:

    REGEN=1 dora grid audiogen.audiogen_pretrained_16khz_eval --dry_run --init

REGEN=1 composes the XPs; later runs without it relaunch the same XPs (see grids/_eval.py).
docs/METRICS.md says where to get the weights of each metric model.
"""
from ..musicgen._explorers import GenerationEvalExplorer
from .._eval import SAMPLING, eval_opts, released_model_solver, relaunch_or_regenerate

GRID = 'audiogen.audiogen_pretrained_16khz_eval'


@GenerationEvalExplorer
def explorer(launcher):
    if not relaunch_or_regenerate(launcher, GRID):
        return
    opts = eval_opts('audio/audiocaps_16khz', 'solver/audiogen/evaluation', batch_size=32)
    opts['metrics.kld.passt.pretrained_length'] = 10  # 10 s AudioCaps clips
    with launcher.job_array():
        sub = released_model_solver(launcher, 'audiogen/audiogen_base_16khz')
        sub({'continue_from': '//pretrained/facebook/audiogen-medium'}, opts, SAMPLING)
