"""MusicGen text-to-music models at 32 kHz (small, medium, large):

    dora grid musicgen.musicgen_base_32khz --dry_run --init
"""
from ._explorers import LMExplorer
from .._recipes import bind_grid, submit_musicgen_scales


@LMExplorer
def explorer(launcher):
    bind_grid(launcher, solver='musicgen/musicgen_base_32khz')
    submit_musicgen_scales(launcher)
