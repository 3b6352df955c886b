"""EnCodec at 24 kHz (mono, causal, 4 codebooks of 1024) on a generic audio dataset."""
from ._explorers import CompressionExplorer
from .._recipes import bind_grid


@CompressionExplorer
def explorer(launcher):
    bind_grid(launcher, solver='compression/encodec_base_24khz', gpus=8)
    launcher()
