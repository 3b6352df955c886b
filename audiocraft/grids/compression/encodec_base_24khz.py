"""EnCodec at 24 kHz (mono, causal, 4 codebooks of 1024) on a generic audio dataset."""
from ._explorers import CompressionExplorer
from ...environment import AudioCraftEnvironment


@CompressionExplorer
def explorer(launcher):
    partitions = AudioCraftEnvironment.get_slurm_partitions(['team', 'global'])
    launcher.slurm_(gpus=8, partition=partitions)
    # the dataset must be set: edit this grid or pass your own dset config
    launcher.bind_(solver='compression/encodec_base_24khz')
    launcher.bind_(dset='audio/example')
    launcher()
