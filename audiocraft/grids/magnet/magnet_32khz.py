"""MAGNeT text-to-music models at 32 kHz (small, medium):

    dora grid magnet.magnet_32khz --dry_run --init
"""
from ..musicgen._explorers import LMExplorer
from .._recipes import bind_grid, submit_magnet_scales


@LMExplorer
def explorer(launcher):
    bind_grid(launcher, solver='magnet/magnet_32khz')
    submit_magnet_scales(launcher)
