"""MusicGen conditioned on CLAP embeddings (joint text/audio) at 32 kHz:

    dora grid musicgen.musicgen_clapemb_32khz --dry_run --init

Training conditions on the CLAP embedding of the audio itself, optionally on the text embedding
half of the time (`text_p`), with or without a cache of the audio embeddings. Needs the `clap`
extra and its checkpoint at run time (see docs/CONDITIONING.md), not to list the XPs.
"""
from ._explorers import LMExplorer
from .._recipes import FSDP, bind_grid

# Replace with a folder shared by all the machines of the cluster.
CLAP_CACHE_PATH = '/tmp/audiocraft_cache/clap_embed_music'


@LMExplorer
def explorer(launcher):
    bind_grid(launcher, solver='musicgen/musicgen_base_32khz')
    launcher.bind_(conditioner='clapemb2music')

    cache_path = {'conditioners.description.clap.cache_path': CLAP_CACHE_PATH}
    text_wav_training = {'conditioners.description.clap.text_p': 0.5}

    launcher.bind_(FSDP)
    launcher.slurm_(gpus=32).bind_(label='32gpus')
    with launcher.job_array():
        launcher()
        launcher(text_wav_training)
        launcher(cache_path)
        launcher(cache_path, text_wav_training)
