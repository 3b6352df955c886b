"""Grid with the tiny debug EnCodec (CPU friendly):

    dora grid compression.debug --dry_run --init
"""
from ._explorers import CompressionExplorer
from ...environment import AudioCraftEnvironment


@CompressionExplorer
def explorer(launcher):
    partitions = AudioCraftEnvironment.get_slurm_partitions(['team', 'global'])
    launcher.slurm_(gpus=2, partition=partitions)
    launcher.bind_(solver='compression/debug')

    with launcher.job_array():
        # the debug config as is
        launcher()
        # grids can override any config key
        launcher({'rvq.bins': 2048, 'rvq.n_q': 4})
