"""EnCodec at 32 kHz for MusicGen (mono, 4 codebooks of 2048, 50 Hz frame rate)."""
from ._explorers import CompressionExplorer
from ...environment import AudioCraftEnvironment


@CompressionExplorer
def explorer(launcher):
    partitions = AudioCraftEnvironment.get_slurm_partitions(['team', 'global'])
    launcher.slurm_(gpus=8, partition=partitions)
    launcher.bind_(solver='compression/encodec_musicgen_32khz')
    launcher.bind_(dset='audio/example')  # replace with your music dataset
    launcher()
