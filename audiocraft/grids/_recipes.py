"""Pieces shared by the grids (EnCodec, MusicGen, AudioGen, MAGNeT).

Each grid file still reads as its recipe: it names the solver and calls these for the parts that
are the same across grids.
"""
import typing as tp

from ..environment import AudioCraftEnvironment

FSDP = {'autocast': False, 'fsdp.use': True}
MEDIUM = {'model/lm/model_scale': 'medium'}
LARGE = {'model/lm/model_scale': 'large'}


def bind_grid(launcher: tp.Any, solver: str, gpus: int = 32) -> None:
    """SLURM partitions and GPUs, the solver, and the example dataset: replace `dset` with your
    own music or sound dataset (see docs/DATASETS.md), or pass your own dset config."""
    partitions = AudioCraftEnvironment.get_slurm_partitions(['team', 'global'])
    launcher.slurm_(gpus=gpus, partition=partitions)
    launcher.bind_(solver=solver)
    launcher.bind_(dset='audio/example')


def submit_musicgen_scales(launcher: tp.Any, *small_variants: tp.Dict[str, tp.Any]) -> None:
    """The released MusicGen trainings, with FSDP: small on 32 GPUs (the base config, then one XP
    per entry of `small_variants`), medium on 64 (AdamW), large on 96 (lower CFG and word
    dropout, AdamW, gradient clipping at 3)."""
    cfg_low = {'classifier_free_guidance.training_dropout': 0.2}
    wd_low = {'conditioners.description.t5.word_dropout': 0.2}
    adam = {'optim.optimizer': 'adamw', 'optim.lr': 1e-4}

    launcher.bind_(FSDP)

    launcher.slurm_(gpus=32).bind_(label='32gpus')
    with launcher.job_array():
        sub = launcher.bind()
        sub()
        for variant in small_variants:
            sub(variant)

    launcher.slurm_(gpus=64).bind_(label='64gpus')
    with launcher.job_array():
        sub = launcher.bind()
        sub(MEDIUM, adam)

    launcher.slurm_(gpus=96).bind_(label='96gpus')
    with launcher.job_array():
        sub = launcher.bind()
        sub(LARGE, cfg_low, wd_low, adam, {'optim.max_norm': 3})


def submit_magnet_scales(launcher: tp.Any) -> None:
    """The released MAGNeT trainings: small (300M) on 32 GPUs, medium (1.5B) with FSDP on 64."""
    launcher.slurm_(gpus=32).bind_(label='32gpus')
    with launcher.job_array():
        sub = launcher.bind()
        sub()

    launcher.bind_(FSDP)
    launcher.slurm_(gpus=64).bind_(label='64gpus')
    with launcher.job_array():
        sub = launcher.bind()
        sub(MEDIUM)
