"""EnCodec at 32 kHz for MusicGen (mono, 4 codebooks of 2048, 50 Hz frame rate)."""
from ._explorers import CompressionExplorer
from .._recipes import bind_grid


@CompressionExplorer
def explorer(launcher):
    bind_grid(launcher, solver='compression/encodec_musicgen_32khz', gpus=8)
    launcher()
