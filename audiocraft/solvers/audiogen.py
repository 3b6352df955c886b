"""Solver training AudioGen: MusicGen's LM training on sound datasets with text descriptions."""
import flashy

from . import builders, musicgen


class AudioGenSolver(musicgen.MusicGenSolver):
    """AudioGen solver: same training as MusicGen, on a `SoundDataset`."""
    DATASET_TYPE: builders.DatasetType = builders.DatasetType.SOUND

    def get_formatter(self, stage_name: str) -> flashy.Formatter:
        return flashy.Formatter({
            'lr': '.2E',
            'ce': '.3f',
            'ppl': '.3f',
            'grad_norm': '.3E',
        }, exclude_keys=['ce_q*', 'ppl_q*'])
