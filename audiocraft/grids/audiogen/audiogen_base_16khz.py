"""AudioGen text-to-sound model at 16 kHz (medium):

    dora grid audiogen.audiogen_base_16khz --dry_run --init
"""
from ..musicgen._explorers import LMExplorer
from .._recipes import FSDP, MEDIUM, bind_grid


@LMExplorer
def explorer(launcher):
    bind_grid(launcher, solver='audiogen/audiogen_base_16khz', gpus=64)
    launcher.bind_(FSDP)
    launcher(MEDIUM)
