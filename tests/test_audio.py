"""Audio file reading and writing."""
import math
import shutil
import wave

import pytest
import torch

from audiocraft.data.audio import audio_info, audio_read, audio_write

SR = 32000


def _signal(seconds: float = 1.0, channels: int = 2) -> torch.Tensor:
    """Band-limited noise: alignment errors show up as large sample differences."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(channels, 1, int(SR * seconds), generator=gen) * 0.2
    smooth = torch.nn.functional.avg_pool1d(noise, 8, 1, 4)[..., :int(SR * seconds)]
    return smooth[:, 0]


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
def test_round_trip(tmp_path, fmt):
    if fmt == "ogg" and shutil.which("ffmpeg") is None:
        pytest.fail("writing ogg needs the ffmpeg binary (CI installs it)")
    wav = _signal()
    path = audio_write(tmp_path / "sub" / "x", wav, SR, format=fmt, strategy='clip')
    assert path == tmp_path / "sub" / f"x.{fmt}" and path.exists()
    info = audio_info(path)
    assert info.sample_rate == SR and info.channels == 2
    assert abs(info.duration - 1.0) < 0.05
    out, sr = audio_read(path)
    assert sr == SR and out.dtype == torch.float32 and out.shape[0] == 2
    assert abs(out.shape[1] - wav.shape[1]) <= (0 if fmt in ("wav", "flac") else 2048)
    n = min(out.shape[1], wav.shape[1])
    if fmt in ("wav", "flac"):
        assert (out - wav).abs().max() < 1e-4  # 16-bit quantisation only
    else:
        # Lossy but time-aligned: a shift of even a few samples would make this error ~1.
        rel_err = (out[:, :n] - wav[:, :n]).norm() / wav[:, :n].norm()
        assert rel_err < 0.5
    # Seeking lands on the same samples as reading everything.
    part, _ = audio_read(path, seek_time=0.5, duration=0.25)
    assert part.shape == (2, 8000)
    assert (part - out[:, 16000:24000]).abs().max() < 1e-4


def test_wav_is_16_bit_pcm_and_exact(tmp_path):
    wav = torch.tensor([[0., 0.5, -0.5, 1., -1., 0.25]])
    path = audio_write(tmp_path / "pcm", wav, 8000, normalize=False, strategy='clip',
                       peak_clip_headroom_db=0)
    with wave.open(str(path)) as reader:
        assert (reader.getsampwidth(), reader.getnchannels(), reader.getnframes()) == (2, 1, 6)
        samples = torch.frombuffer(bytearray(reader.readframes(6)), dtype=torch.int16)
    assert samples.tolist() == [0, 16384, -16384, 32767, -32767, 8192]
    out, sr = audio_read(path)
    assert sr == 8000
    expected = torch.tensor([[0., 0.5, -0.5, 32767 / 32768, -32767 / 32768, 0.25]])
    assert torch.allclose(out, expected, atol=1e-6)


def test_read_options(tmp_path):
    wav = _signal(seconds=1.0, channels=1)
    path = audio_write(tmp_path / "m", wav, SR, strategy='clip')
    full, _ = audio_read(path)
    assert full.shape == (1, SR)
    tail, _ = audio_read(path, seek_time=0.9)
    assert tail.shape == (1, int(0.1 * SR)) and torch.equal(tail, full[:, int(0.9 * SR):])
    padded, _ = audio_read(path, seek_time=0.75, duration=0.5, pad=True)
    assert padded.shape == (1, SR // 2) and padded[:, SR // 4:].abs().sum() == 0
    short, _ = audio_read(path, seek_time=0.75, duration=0.5)
    assert short.shape == (1, SR // 4)
    past_end, _ = audio_read(path, seek_time=2.0, duration=0.5, pad=True)
    assert past_end.shape == (1, SR // 2) and past_end.abs().sum() == 0
    with pytest.raises(ValueError, match="seek_time"):
        audio_read(path, seek_time=-1)


def test_write_normalisation_and_layout(tmp_path):
    wav = 0.1 * torch.sin(torch.arange(SR) / SR * 2 * math.pi * 440)
    path = audio_write(tmp_path / "peak", wav, SR)  # 1-D is mono, peak-normalised to -1 dB
    out, _ = audio_read(path)
    assert out.shape == (1, SR)
    assert abs(out.abs().max().item() - 10 ** (-1 / 20)) < 1e-3
    path = audio_write(tmp_path / "keep", wav, SR, normalize=False)
    assert abs(audio_read(path)[0].abs().max().item() - 0.1) < 1e-3
    path = audio_write(tmp_path / "raw", wav, SR, add_suffix=False)
    assert path.name == "raw" and audio_info(path).sample_rate == SR
    silent = audio_write(tmp_path / "silent", torch.zeros(1, 100), SR)
    assert audio_read(silent)[0].abs().sum() == 0


def test_write_errors_leave_no_files(tmp_path):
    wav = torch.zeros(1, 10)
    with pytest.raises(ValueError, match="shape"):
        audio_write(tmp_path / "a", torch.zeros(1, 1, 10), SR)
    with pytest.raises(ValueError, match="floating point"):
        audio_write(tmp_path / "a", torch.zeros(1, 10, dtype=torch.int16), SR)
    with pytest.raises(ValueError, match="non-finite"):
        audio_write(tmp_path / "a", torch.tensor([[0., float('nan')]]), SR)
    with pytest.raises(ValueError, match="format"):
        audio_write(tmp_path / "a", wav, SR, format='aiff')
    with pytest.raises(ValueError, match="strategy"):
        audio_write(tmp_path / "a", wav, SR, strategy='median')
    with pytest.raises(Exception):
        audio_write(tmp_path / "a", wav + 0.1, -5)  # invalid sample rate fails in the encoder
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temporary files
    existing = audio_write(tmp_path / "keep", wav + 0.1, SR)
    before = existing.read_bytes()
    with pytest.raises(Exception):
        audio_write(tmp_path / "keep", wav + 0.1, -5)
    assert existing.read_bytes() == before  # a failed write does not clobber the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]


def test_read_errors(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        audio_read(missing)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        audio_info(missing)
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"this is not audio" * 10)
    with pytest.raises(RuntimeError, match="corrupt.mp3"):
        audio_read(corrupt)
    with pytest.raises(RuntimeError, match="corrupt.mp3"):
        audio_info(corrupt)
