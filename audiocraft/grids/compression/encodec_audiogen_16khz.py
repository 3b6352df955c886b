"""EnCodec at 16 kHz for AudioGen (mono, 4 codebooks of 2048, 50 Hz frame rate)."""
from ._explorers import CompressionExplorer
from .._recipes import bind_grid


@CompressionExplorer
def explorer(launcher):
    bind_grid(launcher, solver='compression/encodec_audiogen_16khz', gpus=8)
    launcher()
