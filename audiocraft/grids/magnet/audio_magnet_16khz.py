"""MAGNeT text-to-sound models at 16 kHz (AudioMAGNeT):

    dora grid magnet.audio_magnet_16khz --dry_run --init
"""
from ..musicgen._explorers import LMExplorer
from .._recipes import bind_grid, submit_magnet_scales


@LMExplorer
def explorer(launcher):
    bind_grid(launcher, solver='magnet/audio_magnet_16khz')
    submit_magnet_scales(launcher)
