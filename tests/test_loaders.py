"""Checkpoint resolution (file, folder, URL, hub id) and every error path of the loaders."""
import shutil

import pytest
import torch
from torch import nn

from audiocraft.models import CompressionModel, loaders


@pytest.fixture(scope="module")
def case_dir(cases_dir):
    return cases_dir / 'encodec_32khz_mono'


def test_file_and_folder_resolution(case_dir):
    by_folder = loaders._get_state_dict(case_dir, loaders.COMPRESSION_FILENAME)
    by_file = loaders._get_state_dict(case_dir / loaders.COMPRESSION_FILENAME)
    assert set(by_folder) == {'best_state', 'xp.cfg', 'version', 'exported'}
    assert by_folder['best_state'].keys() == by_file['best_state'].keys()


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not contain 'compression_state_dict.bin'"):
        loaders.load_compression_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loaders.load_compression_model(str(tmp_path / 'nope' / 'compression_state_dict.bin'))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CompressionModel.get_pretrained('./no/such/folder')


def test_corrupt_and_truncated_checkpoints(tmp_path, case_dir):
    garbage = tmp_path / 'garbage' / loaders.COMPRESSION_FILENAME
    garbage.parent.mkdir()
    garbage.write_bytes(b'this is not a torch file' * 10)
    with pytest.raises(RuntimeError, match="corrupt") as info:
        loaders.load_compression_model(garbage.parent)
    assert str(garbage) in str(info.value)
    data = (case_dir / loaders.COMPRESSION_FILENAME).read_bytes()
    truncated = tmp_path / 'truncated.bin'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match="corrupt or truncated") as info:
        CompressionModel.get_pretrained(str(truncated))
    assert 'truncated.bin' in str(info.value)
    empty = tmp_path / 'empty.bin'
    empty.write_bytes(b'')
    with pytest.raises(RuntimeError, match="empty"):
        loaders.load_compression_model(empty)
    not_a_package = tmp_path / 'list.bin'
    torch.save([1, 2, 3], not_a_package)
    with pytest.raises(RuntimeError, match="not an AudioCraft pretrained package"):
        loaders.load_compression_model(not_a_package)
    no_cfg = tmp_path / 'nocfg.bin'
    torch.save({'best_state': {}}, no_cfg)
    with pytest.raises(RuntimeError, match="xp.cfg"):
        loaders.load_compression_model(no_cfg)


def test_unknown_hub_name_offline(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(FileNotFoundError) as info:
        loaders.load_compression_model('someone/unknown-model', cache_dir=str(tmp_path))
    message = str(info.value)
    assert "'someone/unknown-model'" in message
    assert 'offline' in message and 'compression_state_dict.bin into a folder' in message


def test_hub_download_uses_cache_dir(monkeypatch, tmp_path, case_dir):
    calls = []

    def fake_download(repo_id, filename, cache_dir=None, **kwargs):
        calls.append((repo_id, filename, cache_dir))
        return str(case_dir / filename)
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, 'hf_hub_download', fake_download)
    monkeypatch.setenv('AUDIOCRAFT_CACHE_DIR', str(tmp_path / 'env_cache'))
    loaders.load_compression_model_ckpt('org/model')
    loaders.load_compression_model_ckpt('org/model', cache_dir=str(tmp_path / 'arg_cache'))
    monkeypatch.delenv('AUDIOCRAFT_CACHE_DIR')
    loaders.load_compression_model_ckpt('org/model')
    assert calls == [('org/model', loaders.COMPRESSION_FILENAME, str(tmp_path / 'env_cache')),
                     ('org/model', loaders.COMPRESSION_FILENAME, str(tmp_path / 'arg_cache')),
                     ('org/model', loaders.COMPRESSION_FILENAME, None)]


def test_real_offline_hub_cache(monkeypatch, tmp_path, case_dir):
    # A hub cache laid out as huggingface_hub writes it resolves offline through hf_hub_download.
    snapshot = tmp_path / 'models--org--codec' / 'snapshots' / ('a' * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(case_dir / loaders.COMPRESSION_FILENAME, snapshot)
    (tmp_path / 'models--org--codec' / 'refs').mkdir()
    (tmp_path / 'models--org--codec' / 'refs' / 'main').write_text('a' * 40)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('AUDIOCRAFT_CACHE_DIR', str(tmp_path))
    model = loaders.load_compression_model('org/codec')
    assert model.cardinality == 64 and not model.training


def test_url_errors_are_clear(monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise ConnectionError("no network")
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, 'download_url_to_file', fail)
    with pytest.raises(FileNotFoundError, match="https://example.com/x.bin"):
        loaders.load_compression_model('https://example.com/x.bin')


def test_build_meta_and_load():
    state = {'weight': torch.ones(3, 2, dtype=torch.float16), 'bias': torch.zeros(3, dtype=torch.float16)}
    model = loaders.build_meta_and_load(lambda: nn.Linear(2, 3), state, name='tiny')
    assert model.weight.dtype == torch.float32 and not model.weight.is_meta
    assert torch.equal(model(torch.ones(1, 2)), torch.full((1, 3), 2.))
    with pytest.raises(RuntimeError, match="missing keys"):
        loaders.build_meta_and_load(lambda: nn.Linear(2, 3), {'weight': state['weight']}, name='tiny')
    with pytest.raises(RuntimeError, match="shape"):
        loaders.build_meta_and_load(lambda: nn.Linear(2, 4), state, name='tiny')


def test_load_compression_model_is_meta_built(case_dir):
    model = loaders.load_compression_model(case_dir)
    tensors = list(model.parameters()) + list(model.buffers())
    assert all(t.device.type == 'cpu' for t in tensors)
    # the weight-norm effective weights are valid before any forward
    conv = model.encoder.model[0].conv.conv
    assert not conv.weight.is_meta
    assert torch.allclose(conv.weight, torch._weight_norm(conv.weight_v, conv.weight_g, 0))
