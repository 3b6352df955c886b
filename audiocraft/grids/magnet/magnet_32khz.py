"""MAGNeT text-to-music models at 32 kHz (small, medium):

    dora grid magnet.magnet_32khz --dry_run --init
"""
from ..musicgen._explorers import LMExplorer
from .._lm_recipes import bind_lm_grid, submit_magnet_scales


@LMExplorer
def explorer(launcher):
    bind_lm_grid(launcher, solver='magnet/magnet_32khz')
    submit_magnet_scales(launcher)
