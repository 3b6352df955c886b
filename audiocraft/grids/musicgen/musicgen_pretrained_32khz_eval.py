"""Objective metrics (FAD, KLD, CLAP text consistency; chroma cosine for melody) of the released
MusicGen models on MusicCaps, with the evaluate stage only:

    REGEN=1 dora grid musicgen.musicgen_pretrained_32khz_eval --dry_run --init

REGEN=1 composes the XPs; later runs without it relaunch the same XPs (see grids/_eval.py).
docs/METRICS.md says where to get the weights of each metric model.
"""
from ._explorers import GenerationEvalExplorer
from .._eval import eval_opts, relaunch_or_regenerate

GRID = 'musicgen.musicgen_pretrained_32khz_eval'
SAMPLING = {'generate.lm.use_sampling': True, 'generate.lm.top_k': 250, 'generate.lm.top_p': 0.}
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
        base = launcher.bind(solver='musicgen/musicgen_base_32khz')
        base.bind_({'autocast': False, 'fsdp.use': True})
        for name, batch_size in (('small', 128), ('medium', 64), ('large', 32)):
            sub = base.bind({'continue_from': f'//pretrained/facebook/musicgen-{name}'}, opts)
            sub({'dataset.evaluate.batch_size': batch_size}, SAMPLING)

        melody = launcher.bind(solver='musicgen/musicgen_melody_32khz')
        melody.bind_({'autocast': False, 'fsdp.use': True})
        sub = melody.bind({'continue_from': '//pretrained/facebook/musicgen-melody'}, opts)
        sub(SAMPLING)
        sub(SAMPLING, CHROMA)
