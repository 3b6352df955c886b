"""Objective metrics (FAD, KLD, CLAP text consistency; chroma cosine for melody) of the released
MusicGen models on MusicCaps, with the evaluate stage only:

    REGEN=1 dora grid musicgen.musicgen_pretrained_32khz_eval --dry_run --init

REGEN=1 composes the XPs; later runs without it relaunch the same XPs (see grids/_eval.py).
docs/METRICS.md says where to get the weights of each metric model.
"""
from ._explorers import GenerationEvalExplorer
from .._eval import SAMPLING, eval_opts, released_model_solver, relaunch_or_regenerate

GRID = 'musicgen.musicgen_pretrained_32khz_eval'
CHROMA = {  # melody adherence on a music dataset with melodies (replace with your own)
    'dataset.evaluate.segment_duration': 30, 'dataset.evaluate.num_samples': 1000,
    'evaluate.metrics.chroma_cosine': True, 'evaluate.metrics.fad': False, 'evaluate.metrics.kld': False,
    'evaluate.metrics.text_consistency': False,
}


@GenerationEvalExplorer
def explorer(launcher):
    if not relaunch_or_regenerate(launcher, GRID):
        return
    opts = eval_opts('audio/musiccaps_32khz', 'solver/musicgen/evaluation', batch_size=32)
    with launcher.job_array():
        base = released_model_solver(launcher, 'musicgen/musicgen_base_32khz')
        for name, batch_size in (('small', 128), ('medium', 64), ('large', 32)):
            sub = base.bind({'continue_from': f'//pretrained/facebook/musicgen-{name}'}, opts)
            sub({'dataset.evaluate.batch_size': batch_size}, SAMPLING)

        melody = released_model_solver(launcher, 'musicgen/musicgen_melody_32khz')
        sub = melody.bind({'continue_from': '//pretrained/facebook/musicgen-melody'}, opts)
        sub(SAMPLING)
        sub(SAMPLING, CHROMA)
