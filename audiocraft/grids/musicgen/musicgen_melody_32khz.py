"""MusicGen melody (text and chroma conditioning) at 32 kHz:

    dora grid musicgen.musicgen_melody_32khz --dry_run --init
"""
from ._explorers import LMExplorer
from .._recipes import bind_grid, submit_musicgen_scales


@LMExplorer
def explorer(launcher):
    bind_grid(launcher, solver='musicgen/musicgen_melody_32khz')

    cache_path = {'conditioners.self_wav.chroma_stem.cache_path': '/tmp/audiocraft_chroma_cache'}

    # CACHE GENERATION JOBS
    n_cache_gen_jobs = 4
    gen_sub = launcher.slurm(gpus=1)
    gen_sub.bind_(cache_path, {
        # the cache is always computed over the whole file, so duration doesn't matter here.
        'dataset.segment_duration': 2.,
        'dataset.batch_size': 8,
        'dataset.train.permutation_on_files': True,  # try to not repeat files.
        'optim.epochs': 10,
        'model/lm/model_scale': 'xsmall',
    })
    with gen_sub.job_array():
        for gen_job in range(n_cache_gen_jobs):
            gen_sub({'dataset.train.shuffle_seed': gen_job})

    # ACTUAL TRAINING JOBS (the small model also with the chroma cache).
    submit_musicgen_scales(launcher, cache_path)
