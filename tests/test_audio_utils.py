"""Waveform utilities: channels, resampling, normalisation, PCM conversion, codec round trips."""
import math

import pytest
import torch

from audiocraft.data.audio import compress, get_mp3
from audiocraft.data.audio_utils import (convert_audio, convert_audio_channels, f32_pcm, i16_pcm, normalize_audio,
                                         normalize_loudness)
from audiocraft.data.resample import Resampler, ResamplerCache


def _tone(freq: float = 440., sr: int = 16000, seconds: float = 1., amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * freq * torch.arange(int(sr * seconds)) / sr)


def test_convert_audio_channels():
    stereo = torch.stack([torch.ones(5), 3 * torch.ones(5)])
    assert torch.equal(convert_audio_channels(stereo, 1), 2 * torch.ones(1, 5))
    mono = torch.ones(4, 1, 5)  # batched
    assert convert_audio_channels(mono, 2).shape == (4, 2, 5)
    assert torch.equal(convert_audio_channels(torch.arange(15.).view(3, 5), 2), torch.arange(10.).view(2, 5))
    assert convert_audio_channels(stereo, 2) is stereo
    with pytest.raises(ValueError, match="channels"):
        convert_audio_channels(stereo, 3)
    with pytest.raises(ValueError, match="shape"):
        convert_audio_channels(torch.ones(5), 1)


def test_convert_audio_resamples():
    wav = _tone(440., 16000)[None]
    up = convert_audio(wav, 16000, 32000, 2)
    assert up.shape == (2, 32000)
    # The tone survives: compare with a tone generated at the new rate, away from the edges.
    assert (up[0, 1000:-1000] - _tone(440., 32000)[1000:-1000]).abs().max() < 1e-3
    down = convert_audio(up, 32000, 16000, 1)
    assert (down[0, 500:-500] - wav[0, 500:-500]).abs().max() < 1e-3
    assert torch.equal(convert_audio(wav, 16000, 16000, 1), wav)
    with pytest.raises(ValueError, match="positive"):
        convert_audio(wav, 0, 16000, 1)


@pytest.mark.parametrize('rates', [(32000, 44100), (44100, 32000), (48000, 32000), (16000, 32000), (22050, 24000)])
def test_resampler_matches_julius(rates):
    # The filters are julius' (demucs and AudioCraft use them): the same samples, lengths included,
    # for lengths whose float32 output length rounds up (julius' behaviour).
    julius = pytest.importorskip('julius')
    torch.manual_seed(0)
    for length in (1, 999, 320037):
        wav = torch.randn(2, 1, length)
        expected = julius.resample_frac(wav, *rates)
        got = Resampler(*rates)(wav)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=0, atol=1e-6)


def test_resampler_cache_is_per_owner():
    first, second = ResamplerCache(), ResamplerCache()
    assert first.get(32000, 44100) is first.get(32000, 44100)
    assert first.get(32000, 44100) is not second.get(32000, 44100)
    wav = torch.randn(1, 1, 3200)
    assert torch.equal(convert_audio(wav, 32000, 44100, 1, first), convert_audio(wav, 32000, 44100, 1))
    with pytest.raises(ValueError, match="integers"):
        Resampler(32000.5, 44100)


def test_normalize_strategies():
    wav = torch.stack([_tone(amp=0.1), _tone(amp=0.05)])
    peak = normalize_audio(wav, strategy='peak', peak_clip_headroom_db=1)
    assert abs(peak.abs().max().item() - 10 ** (-1 / 20)) < 1e-6
    # Without `normalize`, peak only attenuates.
    assert torch.equal(normalize_audio(wav, normalize=False, strategy='peak'), wav)
    loud = 2 * wav / wav.abs().max()
    assert normalize_audio(loud, normalize=False, strategy='peak').abs().max() <= 10 ** (-1 / 20) + 1e-6
    clip = normalize_audio(loud, strategy='clip', peak_clip_headroom_db=3)
    assert abs(clip.abs().max().item() - 10 ** (-3 / 20)) < 1e-6
    rms = normalize_audio(wav, strategy='rms', rms_headroom_db=20)
    assert abs(rms.mean(0).pow(2).mean().sqrt().item() - 0.1) < 1e-5
    assert torch.equal(normalize_audio(wav, strategy='none'), wav)
    assert normalize_audio(torch.zeros(1, 10), strategy='peak').abs().sum() == 0  # silence stays finite
    with pytest.raises(ValueError, match="strategy"):
        normalize_audio(wav, strategy='max')
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        normalize_audio(loud, strategy='none')
    with pytest.raises(ValueError, match="sample rate"):
        normalize_audio(wav, strategy='loudness')


def test_loudness_normalisation(capsys):
    sr = 16000
    wav = _tone(997., sr, 2., amp=0.01)[None]
    out = normalize_loudness(wav, sr, loudness_headroom_db=20)
    # BS.1770's calibration: a full-scale ~1 kHz sine in one channel reads -3.01 LKFS, so at
    # -20 LUFS its peak is 10 ** ((-20 + 3.01) / 20).
    peak_db = 20 * math.log10(out.abs().max().item())
    # 0.1 dB: the K-weighting filters are re-derived for 16 kHz, where the calibration is approximate.
    assert abs(peak_db - (-20 + 3.01)) < 0.1
    # Near-silent signals are left alone.
    quiet = 1e-4 * wav
    assert torch.equal(normalize_loudness(quiet, sr), quiet)
    squashed = normalize_loudness(wav, sr, loudness_headroom_db=-20, loudness_compressor=True)
    assert torch.allclose(squashed, torch.tanh(normalize_loudness(wav, sr, loudness_headroom_db=-20)))
    # The loudness strategy clips and can report it.
    clipped = normalize_audio(wav, strategy='loudness', loudness_headroom_db=-10, sample_rate=sr,
                              log_clipping=True, stem_name='tone')
    assert clipped.abs().max() <= 1
    assert "CLIPPING tone" in capsys.readouterr().err


def test_pcm_conversions():
    wav = torch.tensor([0., 0.5, -0.5, -1.])
    pcm = i16_pcm(wav)
    assert pcm.dtype == torch.int16 and pcm.tolist() == [0, 16384, -16384, -32768]
    assert torch.equal(f32_pcm(pcm), wav)
    # +1.0 does not fit in int16 with the 2**15 scale: the symmetric scale is used.
    assert i16_pcm(torch.tensor([1., -1.])).tolist() == [32767, -32767]
    assert torch.equal(i16_pcm(pcm), pcm)
    assert f32_pcm(torch.tensor([2 ** 30], dtype=torch.int32)).item() == 0.5
    assert f32_pcm(wav) is wav
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        i16_pcm(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="dtype"):
        f32_pcm(torch.tensor([1], dtype=torch.int64))


def test_codec_round_trips():
    sr = 32000
    gen = torch.Generator().manual_seed(0)
    noise = torch.nn.functional.avg_pool1d(torch.randn(2, 1, sr, generator=gen) * 0.2, 8, 1, 4)[..., :sr]
    for fmt, max_rel_err in [('mp3', 0.2), ('aac', 0.5), ('flac', 1e-3)]:
        out, out_sr = compress(noise, sr, fmt)
        assert out_sr == sr and out.shape == noise.shape
        # Time-aligned: a delay of a few samples would give an error close to 1.4.
        assert ((out - noise).norm() / noise.norm()).item() < max_rel_err, fmt
    single, _ = compress(noise[0], sr, 'mp3', bitrate='64k')
    assert single.shape == noise[0].shape
    assert get_mp3(noise, sr).shape == noise.shape
    with pytest.raises(ValueError, match="format"):
        compress(noise, sr, 'wma')
    with pytest.raises(ValueError, match="bitrate"):
        compress(noise, sr, 'mp3', bitrate='fast')
