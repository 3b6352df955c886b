"""`get_pretrained` on the path of a `state_dict.bin` file, and on a model of the wrong family."""
import shutil

import pytest
import torch

from audiocraft.models import MAGNeT, AudioGen, MusicGen

pytestmark = pytest.mark.usefixtures('single_thread')


def _state(model) -> dict:
    return {**{f'lm.{k}': v for k, v in model.lm.state_dict().items()},
            **{f'codec.{k}': v for k, v in model.compression_model.state_dict().items()}}


def _same(a, b) -> bool:
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize('cls,case', [(MusicGen, 'musicgen_variants_tiny'), (MAGNeT, 'magnet_tiny')])
def test_lm_file_path_takes_the_codec_beside_it(cls, case, cases_dir):
    folder = cases_dir / case
    by_file = cls.get_pretrained(str(folder / 'state_dict.bin'), device='cpu')
    assert _same(by_file, cls.get_pretrained(str(folder), device='cpu'))


def test_lm_file_without_codec_beside_it(tmp_path, cases_dir):
    shutil.copy(cases_dir / 'musicgen_variants_tiny' / 'state_dict.bin', tmp_path / 'state_dict.bin')
    with pytest.raises(FileNotFoundError, match="compression_state_dict.bin beside it"):
        MusicGen.get_pretrained(str(tmp_path / 'state_dict.bin'), device='cpu')


@pytest.mark.parametrize('cls', [MusicGen, AudioGen])
def test_magnet_checkpoint_is_refused_at_load(cls, cases_dir):
    with pytest.raises(ValueError, match="MAGNeT model.*MAGNeT.get_pretrained"):
        cls.get_pretrained(str(cases_dir / 'magnet_tiny'), device='cpu')


def test_autoregressive_checkpoint_is_refused_by_magnet(cases_dir):
    with pytest.raises(ValueError, match="not a MAGNeT model.*MusicGen/AudioGen"):
        MAGNeT.get_pretrained(str(cases_dir / 'musicgen_variants_tiny'), device='cpu')
