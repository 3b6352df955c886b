"""Solver training AudioGen: MusicGen's LM training on sound datasets with text descriptions."""
from . import builders, musicgen


class AudioGenSolver(musicgen.MusicGenSolver):
    """AudioGen solver: same training (and metrics formatting) as MusicGen, on a `SoundDataset`."""
    DATASET_TYPE: builders.DatasetType = builders.DatasetType.SOUND
