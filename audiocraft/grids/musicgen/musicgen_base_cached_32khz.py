"""MusicGen text-to-music at 32 kHz, trained from a cache of EnCodec tokens:

    dora grid musicgen.musicgen_base_cached_32khz --dry_run --init

Two phases, as in AudioCraft. First, jobs sharded over the dataset write the token cache
(`cache.write`), with a tiny unconditioned LM since only the tokens matter. Once they are done
(or far enough ahead), set `CACHE_WRITTEN = True` below: the grid then lists the usual small /
medium / large trainings, which read the tokens from the cache instead of running EnCodec.
"""
from ._explorers import LMExplorer
from .._recipes import bind_grid, submit_musicgen_scales

# Replace with a folder shared by all the machines of the cluster.
CACHE_PATH = '/tmp/audiocraft_cache/musicgen_32khz_tokens'
CACHE_WRITTEN = False  # set to True once the cache-writing jobs are done


@LMExplorer
def explorer(launcher):
    bind_grid(launcher, solver='musicgen/musicgen_base_32khz')

    if not CACHE_WRITTEN:
        cache_write = {
            'cache.path': CACHE_PATH,
            'cache.write': True,
            'generate.every': 500,
            'evaluate.every': 500,
            'logging.log_updates': 50,
        }
        cache_sub = launcher.bind({'model/lm/model_scale': 'xsmall', 'conditioner': 'none'})
        cache_sub.bind_({'deadlock.use': True})
        cache_sub.slurm_(gpus=8)
        with cache_sub.job_array():
            num_shards = 10  # jobs writing the cache in parallel
            for shard in range(num_shards):
                cache_sub(cache_write, {'cache.write_num_shards': num_shards, 'cache.write_shard': shard})
        return

    launcher.bind_({'cache.path': CACHE_PATH})
    submit_musicgen_scales(launcher)
