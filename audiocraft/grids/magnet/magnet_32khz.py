"""MAGNeT text-to-music models at 32 kHz (small, medium):

    dora grid magnet.magnet_32khz --dry_run --init
"""
from ..musicgen._explorers import LMExplorer
from ...environment import AudioCraftEnvironment


@LMExplorer
def explorer(launcher):
    partitions = AudioCraftEnvironment.get_slurm_partitions(['team', 'global'])
    launcher.slurm_(gpus=32, partition=partitions)
    launcher.bind_(solver='magnet/magnet_32khz')
    # replace with your music dataset
    launcher.bind_(dset='audio/example')

    fsdp = {'autocast': False, 'fsdp.use': True}
    medium = {'model/lm/model_scale': 'medium'}

    # small model (300M)
    launcher.slurm_(gpus=32).bind_(label='32gpus')
    with launcher.job_array():
        sub = launcher.bind()
        sub()

    # medium model (1.5B)
    launcher.bind_(fsdp)
    launcher.slurm_(gpus=64).bind_(label='64gpus')
    with launcher.job_array():
        sub = launcher.bind()
        sub(medium)
