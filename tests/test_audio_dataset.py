"""AudioDataset: manifests, segment sampling, conversion, collation and error handling."""
import gzip
import json
import logging
import os
from pathlib import Path
import subprocess
import sys

import omegaconf
import pytest
import torch

from audiocraft.data.audio import audio_write
from audiocraft.data.audio_dataset import (AudioDataset, AudioMeta, SegmentInfo, find_audio_files,
                                           load_audio_meta, main as manifest_main, save_audio_meta)
from audiocraft.data.zip import PathInZip

REPO = Path(__file__).parent.parent


def _tone(duration: float, sample_rate: int, channels: int = 1, freq: float = 440.) -> torch.Tensor:
    t = torch.arange(int(duration * sample_rate)) / sample_rate
    wav = 0.5 * torch.sin(2 * torch.pi * freq * t)
    return wav[None].repeat(channels, 1)


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    """Three wav files of 1, 1.5 and 2 s at 16 kHz (one stereo) in nested folders."""
    root = tmp_path / "audio"
    audio_write(root / "a", _tone(1.0, 16000), 16000, strategy='clip')
    audio_write(root / "sub" / "b", _tone(1.5, 16000, freq=220.), 16000, strategy='clip')
    audio_write(root / "sub" / "c", _tone(2.0, 16000, channels=2, freq=330.), 16000, strategy='clip')
    (root / "notes.txt").write_text("not audio")
    return root


def test_find_audio_files_and_manifest_round_trip(audio_dir, tmp_path):
    meta = find_audio_files(audio_dir)
    assert [Path(m.path).name for m in meta] == ["a.wav", "b.wav", "c.wav"]
    assert all(Path(m.path).is_absolute() for m in meta)
    assert [round(m.duration, 3) for m in meta] == [1.0, 1.5, 2.0]
    assert all(m.sample_rate == 16000 and m.amplitude is None for m in meta)
    full = find_audio_files(audio_dir, minimal=False)
    assert full[0].amplitude == pytest.approx(0.5, abs=1e-3)
    for name in ("data.jsonl", "data.jsonl.gz"):
        path = tmp_path / "egs" / name
        save_audio_meta(path, meta)
        assert load_audio_meta(path) == meta
    with gzip.open(tmp_path / "egs" / "data.jsonl.gz", "rt") as f:
        assert json.loads(f.readline())["path"] == meta[0].path


def test_relative_manifest_paths_resolve_from_cwd_or_manifest_folder(audio_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = [AudioMeta(str(Path("audio") / "a.wav"), 1.0, 16000)]
    save_audio_meta(tmp_path / "egs" / "data.jsonl", rel)
    assert load_audio_meta(tmp_path / "egs" / "data.jsonl")[0].path == str(tmp_path / "audio" / "a.wav")
    # relative to the manifest folder when not found from the working directory
    save_audio_meta(audio_dir / "data.jsonl", [AudioMeta("sub/b.wav", 1.5, 16000)])
    monkeypatch.chdir(REPO)
    assert load_audio_meta(audio_dir / "data.jsonl")[0].path == str((audio_dir / "sub" / "b.wav").resolve())


def test_segments_are_resampled_converted_and_padded(audio_dir):
    meta = find_audio_files(audio_dir)
    ds = AudioDataset(meta, segment_duration=1.25, num_samples=12, sample_rate=8000, channels=2,
                      return_info=True, shuffle=False, min_segment_ratio=0.5)
    assert len(ds) == 12
    for index in range(len(ds)):
        wav, info = ds[index]
        assert wav.shape == (2, 10000)
        assert isinstance(info, SegmentInfo)
        assert info.total_frames == 10000 and info.sample_rate == 8000 and info.channels == 2
        assert 0 < info.n_frames <= 10000
        assert info.seek_time <= max(0, info.meta.duration - 1.25 * 0.5) + 1e-6
        if info.n_frames < 10000:
            assert wav[:, info.n_frames:].abs().max() == 0  # zero padding
    # without shuffle an index always maps to the same segment
    wav_a, info_a = ds[3]
    wav_b, info_b = ds[3]
    assert torch.equal(wav_a, wav_b) and info_a == info_b
    batch, infos = ds.collater([ds[0], ds[1], ds[2]])
    assert batch.shape == (3, 2, 10000) and len(infos) == 3


def test_shuffle_depends_on_epoch(audio_dir):
    ds = AudioDataset(find_audio_files(audio_dir), segment_duration=0.5, num_samples=8, sample_rate=16000,
                      channels=1, return_info=True, shuffle=True)
    ds.start_epoch(1)
    first = [ds[i][1].seek_time for i in range(8)]
    assert first == [ds[i][1].seek_time for i in range(8)]
    ds.start_epoch(2)
    assert first != [ds[i][1].seek_time for i in range(8)]


def test_whole_files_are_padded_when_collated(audio_dir):
    ds = AudioDataset(find_audio_files(audio_dir), segment_duration=None, sample_rate=16000, channels=1,
                      return_info=True)
    assert len(ds) == 3
    wav, infos = ds.collater([ds[0], ds[2]])
    assert wav.shape == (2, 1, 32000)
    assert [i.n_frames for i in infos] == [16000, 32000] and all(i.total_frames == 32000 for i in infos)
    plain = AudioDataset(find_audio_files(audio_dir), segment_duration=None, sample_rate=16000, channels=1)
    assert plain.collater([plain[0], plain[1]]).shape == (2, 1, 24000)


def test_sampling_weights_and_duration_filters(audio_dir):
    meta = find_audio_files(audio_dir)
    meta[0].weight, meta[1].weight, meta[2].weight = 0., 0., 1.
    ds = AudioDataset(meta, segment_duration=0.5, num_samples=20, sample_rate=16000, channels=1,
                      return_info=True, sample_on_duration=False, sample_on_weight=True)
    assert {Path(ds[i][1].meta.path).name for i in range(20)} == {"c.wav"}
    filtered = AudioDataset(find_audio_files(audio_dir), segment_duration=0.5, min_audio_duration=1.2,
                            max_audio_duration=1.8, sample_rate=16000, channels=1)
    assert [Path(m.path).name for m in filtered.meta] == ["b.wav"]
    with pytest.raises(ValueError, match="filtered out"):
        AudioDataset(find_audio_files(audio_dir), segment_duration=0.5, min_audio_duration=10.)


def test_from_meta_and_from_path(audio_dir, tmp_path):
    save_audio_meta(tmp_path / "egs" / "data.jsonl.gz", find_audio_files(audio_dir))
    ds = AudioDataset.from_meta(tmp_path / "egs", segment_duration=0.5, num_samples=4, sample_rate=16000,
                                channels=1)
    assert len(ds.meta) == 3 and ds[0].shape == (1, 8000)
    assert len(AudioDataset.from_path(audio_dir, segment_duration=None).meta) == 3


def test_missing_manifest_errors_are_explicit(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.jsonl"):
        AudioDataset.from_meta(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AudioDataset.from_meta(tmp_path / "nowhere" / "data.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "x.wav", "duration": 1.0, "sample_rate": 16000}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        load_audio_meta(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        AudioDataset.from_meta(empty)


def test_undecodable_files_are_skipped_or_raise(audio_dir, caplog):
    broken = audio_dir / "broken.wav"
    broken.write_bytes(b"RIFF....this is not a wav file" * 10)
    good = find_audio_files(audio_dir, skip_errors=True)
    assert "broken.wav" not in [Path(m.path).name for m in good]
    with pytest.raises(RuntimeError, match="broken.wav"):
        find_audio_files(audio_dir)
    meta = good + [AudioMeta(str(broken), 5.0, 16000)]  # heavily weighted by its duration
    skip = AudioDataset(meta, segment_duration=0.5, num_samples=10, sample_rate=16000, channels=1,
                        return_info=True, shuffle=False)
    with caplog.at_level(logging.WARNING):
        paths = {Path(skip[i][1].meta.path).name for i in range(10)}
    assert "broken.wav" not in paths
    assert "broken.wav" in caplog.text
    strict = AudioDataset(meta, segment_duration=0.5, num_samples=10, sample_rate=16000, channels=1,
                          shuffle=False, on_read_error='raise')
    with pytest.raises(RuntimeError, match="Could not decode audio file .*broken.wav"):
        [strict[i] for i in range(10)]
    only_broken = AudioDataset([AudioMeta(str(broken), 1.0, 16000)], segment_duration=0.5, num_samples=2,
                               max_read_retry=3)
    with pytest.raises(RuntimeError, match="broken.wav"):
        only_broken[0]
    with pytest.raises(ValueError, match="on_read_error"):
        AudioDataset(meta, segment_duration=0.5, on_read_error='ignore')


def test_channel_mismatch_is_reported_with_the_file(audio_dir):
    ds = AudioDataset(find_audio_files(audio_dir), segment_duration=None, sample_rate=16000, channels=3)
    ds[0]  # mono can be duplicated to any number of channels
    with pytest.raises(ValueError, match="c.wav.*2 channels"):
        ds[2]


def test_datasource_sample_rate_and_channels_must_fit(audio_dir, tmp_path):
    from audiocraft.solvers import builders
    save_audio_meta(tmp_path / "egs" / "data.jsonl", find_audio_files(audio_dir))
    cfg = omegaconf.OmegaConf.create({
        'sample_rate': 32000, 'channels': 1, 'seed': 0, 'execute_only': None,
        'optim': {'updates_per_epoch': None},
        'datasource': {'max_sample_rate': 16000, 'max_channels': 1, 'train': str(tmp_path / 'egs'),
                       'valid': None, 'evaluate': None, 'generate': None},
        'dataset': {'batch_size': 2, 'num_workers': 0, 'segment_duration': 0.5, 'num_samples': 4,
                    'return_info': False, 'shuffle': False, 'train': {}, 'valid': {}, 'evaluate': {},
                    'generate': {}},
    })
    with pytest.raises(ValueError, match="up to 16000 Hz"):
        builders.get_audio_datasets(cfg)
    cfg.sample_rate = 16000
    cfg.channels = 2
    with pytest.raises(ValueError, match="up to 1 channels"):
        builders.get_audio_datasets(cfg)
    cfg.channels = 1
    loaders = builders.get_audio_datasets(cfg)
    assert list(loaders) == ['train']
    assert next(iter(loaders['train'])).shape == (2, 1, 8000)


def test_manifest_builder_cli(audio_dir, tmp_path):
    out = tmp_path / "egs" / "data.jsonl"
    manifest_main([str(audio_dir), str(out), '--workers', '2'])
    assert len(load_audio_meta(out, resolve=False)) == 3
    (audio_dir / "broken.mp3").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="broken.mp3"):
        manifest_main([str(audio_dir), str(out)])
    manifest_main([str(audio_dir), str(out), '--skip_errors'])
    assert len(load_audio_meta(out)) == 3
    # the real command line
    out_gz = tmp_path / "egs2" / "data.jsonl.gz"
    proc = subprocess.run([sys.executable, '-m', 'audiocraft.data.audio_dataset', str(audio_dir), str(out_gz),
                           '--skip_errors'], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, proc.stderr
    assert len(load_audio_meta(out_gz)) == 3
    with pytest.raises(SystemExit):
        manifest_main([str(tmp_path / 'none'), str(out_gz)])


def test_example_manifest_is_usable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths are found from the manifest location too
    meta = load_audio_meta(REPO / "egs" / "example" / "data.jsonl")
    assert len(meta) == 5
    assert all(Path(m.path).exists() and m.sample_rate == 32000 for m in meta)
    assert all(m.path.startswith(str(REPO.resolve())) for m in meta)
    ds = AudioDataset.from_meta(REPO / "egs" / "example", segment_duration=1., num_samples=2,
                                sample_rate=16000, channels=1)
    assert ds[0].shape == (1, 16000)


def test_path_in_zip():
    p = PathInZip('/data/foo.zip:/meta/file1.json')
    assert (p.zip_path, p.file_path) == ('/data/foo.zip', '/meta/file1.json')
    assert str(PathInZip.from_paths('/a.zip', 'b.json')) == '/a.zip:b.json'
    meta = AudioMeta.from_dict({'path': 'x.wav', 'duration': 1., 'sample_rate': 8000, 'info_path': str(p)})
    assert meta.info_path == p and meta.to_dict()['info_path'] == str(p)
    with pytest.raises(ValueError, match="zip path"):
        PathInZip('no separator')
