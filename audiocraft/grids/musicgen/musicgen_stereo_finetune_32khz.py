"""Stereo MusicGen at 32 kHz, fine-tuned (small, medium, large):

    dora grid musicgen.musicgen_stereo_finetune_32khz --dry_run --init

The stereo models model 8 codebooks: the 4 of each channel, interleaved
(`interleave_stereo_codebooks`), with delays [0, 0, 1, 1, 2, 2, 3, 3]. The dataset must be
stereo. Training continues from the released stereo models (`//pretrained/facebook/musicgen-stereo-*`);
to start from your own 8-codebook checkpoint instead, override `continue_from`.
"""
from ._explorers import LMExplorer
from .._recipes import FSDP, LARGE, MEDIUM, bind_grid


@LMExplorer
def explorer(launcher):
    bind_grid(launcher, solver='musicgen/musicgen_base_32khz')

    cfg_low = {'classifier_free_guidance.training_dropout': 0.2}
    wd_low = {'conditioners.description.t5.word_dropout': 0.2}
    adam = {'optim.optimizer': 'adamw', 'optim.lr': 1e-4}
    stereo = {
        'codebooks_pattern.delay.delays': [0, 0, 1, 1, 2, 2, 3, 3],
        'transformer_lm.n_q': 8,
        'interleave_stereo_codebooks.use': True,
        'channels': 2,
    }

    launcher.bind_(FSDP, stereo, {'optim.epochs': 100})

    launcher.slurm_(gpus=32).bind_(label='32gpus')
    with launcher.job_array():
        sub = launcher.bind({'continue_from': '//pretrained/facebook/musicgen-stereo-small'})
        sub()

    launcher.slurm_(gpus=64).bind_(label='64gpus')
    with launcher.job_array():
        sub = launcher.bind({'continue_from': '//pretrained/facebook/musicgen-stereo-medium'})
        sub(MEDIUM, adam)

    launcher.slurm_(gpus=96).bind_(label='96gpus')
    with launcher.job_array():
        sub = launcher.bind({'continue_from': '//pretrained/facebook/musicgen-stereo-large'})
        sub(LARGE, cfg_low, wd_low, adam, {'optim.max_norm': 3})
