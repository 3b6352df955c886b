"""Audio file I/O with PyAV: reading any format ffmpeg decodes, writing wav, mp3, ogg and flac, codec round trips."""
from dataclasses import dataclass
import io
import logging
import os
from pathlib import Path
import shutil
import subprocess
import uuid
import typing as tp

import numpy as np
import torch
import torch.nn.functional as F

from .audio_utils import convert_audio, f32_pcm, i16_pcm, normalize_audio
from ..utils.dependencies import import_compiled

logger = logging.getLogger(__name__)

PathLike = tp.Union[str, Path]
FileLike = tp.Union[PathLike, tp.BinaryIO]

# container format, codec, sample format fed to the encoder
_FORMATS = {
    'wav': ('wav', 'pcm_s16le', 's16'),
    'flac': ('flac', 'flac', 's16'),
    'mp3': ('mp3', 'libmp3lame', 'fltp'),
    'ogg': ('ogg', 'libvorbis', 'fltp'),
    'aac': ('ipod', 'aac', 'fltp'),  # an m4a container records the priming delay
}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def _av() -> tp.Any:
    """PyAV, imported on first use so that a broken FFmpeg build only disables audio file I/O."""
    return import_compiled("av", "reading and writing audio files")


@dataclass
class AudioFileInfo:
    sample_rate: int
    duration: float
    channels: int


def _check_readable(filepath: FileLike) -> None:
    if isinstance(filepath, (str, Path)) and not Path(filepath).is_file():
        raise FileNotFoundError(f"Audio file not found: {filepath}")


def _open_input(filepath: FileLike, name: str) -> tp.Any:
    try:
        container = _av().open(filepath if not isinstance(filepath, Path) else str(filepath))
    except _av().error.FFmpegError as exc:
        raise RuntimeError(f"Could not decode audio file {name}: {exc}") from exc
    if not container.streams.audio:
        container.close()
        raise RuntimeError(f"No audio stream in {name}.")
    return container


def audio_info(filepath: PathLike) -> AudioFileInfo:
    """Sample rate, duration (seconds) and channel count of an audio file."""
    _check_readable(filepath)
    with _open_input(filepath, str(filepath)) as container:
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        sample_rate = ctx.sample_rate
        channels = ctx.channels
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / _av().time_base
        else:  # no duration in the headers: count the samples
            samples = sum(frame.samples for frame in container.decode(stream))
            duration = samples / sample_rate
    return AudioFileInfo(sample_rate, duration, channels)


def _frame_to_tensor(frame: tp.Any, channels: int) -> torch.Tensor:
    array = frame.to_ndarray()
    if array.shape[0] != channels:  # packed formats interleave the channels in one row
        array = array.reshape(-1, channels).T
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return f32_pcm(torch.from_numpy(np.ascontiguousarray(array)))


def _decode_av(filepath: FileLike, seek_time: float = 0., duration: float = -1.,
               name: tp.Optional[str] = None) -> tp.Tuple[torch.Tensor, int]:
    """Decode [C, T] float32 samples from `seek_time` for `duration` seconds (all when <= 0)."""
    name = name or str(filepath)
    with _open_input(filepath, name) as container:
        stream = container.streams.audio[0]
        sample_rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        # Encoders with a priming delay (mp3) start the stream's timeline after zero.
        start_pts = stream.start_time if stream.start_time is not None else 0
        num_frames = int(sample_rate * duration) if duration > 0 else -1
        frame_offset = int(sample_rate * seek_time)
        if seek_time > 0 and stream.time_base is not None:
            # Land a little early: some decoders (mp3) produce edge artefacts right after a seek.
            target = max(0., seek_time - 0.1)
            try:
                container.seek(int(target / stream.time_base), stream=stream)
            except _av().error.FFmpegError:
                container.seek(0, stream=stream)
        chunks: tp.List[torch.Tensor] = []
        length = 0
        position = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    position = int(round((frame.pts - start_pts) * frame.time_base * sample_rate))
                buf = _frame_to_tensor(frame, channels)
                start = position
                position += buf.shape[1]
                strip = max(0, frame_offset - start)
                if strip >= buf.shape[1]:
                    continue
                buf = buf[:, strip:]
                chunks.append(buf)
                length += buf.shape[1]
                if 0 < num_frames <= length:
                    break
        except _av().error.FFmpegError as exc:
            raise RuntimeError(f"Could not decode audio file {name}: {exc}") from exc
    if not chunks:
        return torch.zeros(channels, 0), sample_rate
    wav = torch.cat(chunks, dim=1)
    if num_frames > 0:
        wav = wav[:, :num_frames]
    return wav, sample_rate


def audio_read(filepath: PathLike, seek_time: float = 0., duration: float = -1.,
               pad: bool = False) -> tp.Tuple[torch.Tensor, int]:
    """Read an audio file as float32 [C, T] and its sample rate.

    Args:
        filepath: file in any format ffmpeg decodes.
        seek_time: start, in seconds.
        duration: seconds to read; <= 0 reads to the end.
        pad: zero-pad to exactly `duration` seconds when the file is shorter.
    """
    _check_readable(filepath)
    if seek_time < 0:
        raise ValueError(f"seek_time must be >= 0, got {seek_time}.")
    wav, sr = _decode_av(filepath, seek_time, duration)
    if pad and duration > 0:
        expected_frames = int(duration * sr)
        wav = F.pad(wav, (0, expected_frames - wav.shape[-1]))
    return wav, sr


def _av_read(filepath: PathLike, seek_time: float = 0., duration: float = -1.) -> tp.Tuple[torch.Tensor, int]:
    """AudioCraft's low-level reader: float32 [C, T] from `seek_time` for `duration` seconds (all if < 0).

    Seeking past the end gives an empty [C, 0] tensor rather than an error.
    """
    _check_readable(filepath)
    return _decode_av(filepath, seek_time, duration)


# AudioCraft names of the header readers; a single PyAV-based one serves every format.
_av_info = audio_info
_soundfile_info = audio_info


def _layout(channels: int) -> str:
    return {1: 'mono', 2: 'stereo'}.get(channels, f'{channels}c')


def _parse_bitrate(bitrate: tp.Union[str, int]) -> int:
    text = str(bitrate).strip().lower()
    try:
        return int(float(text[:-1]) * 1000) if text.endswith('k') else int(text)
    except ValueError:
        raise ValueError(f"Invalid bitrate {bitrate!r}: use bits per second or a string like '128k'.") from None


def _encode_av(target: FileLike, wav: torch.Tensor, sample_rate: int, format: str,
               bitrate: tp.Optional[tp.Union[str, int]] = None) -> None:
    """Encode float [C, T] samples in [-1, 1] with PyAV into `target` (path or binary file)."""
    container_format, codec, sample_format = _FORMATS[format]
    channels = wav.shape[0]
    if format == 'mp3' and sample_rate not in _MP3_RATES:
        new_rate = min([r for r in _MP3_RATES if r >= sample_rate] or [_MP3_RATES[-1]])
        wav = convert_audio(wav, sample_rate, new_rate, channels)
        sample_rate = new_rate
    if sample_format == 's16':
        array = i16_pcm(wav.clamp(-1, 1)).numpy().T.reshape(1, -1)  # interleaved
    else:
        array = wav.float().numpy()
    target_arg = str(target) if isinstance(target, Path) else target
    with _av().open(target_arg, 'w', format=container_format) as container:
        stream = container.add_stream(codec, rate=sample_rate)
        stream.layout = _layout(channels)
        stream.format = sample_format
        if bitrate is not None:
            stream.bit_rate = _parse_bitrate(bitrate)
        step = 4096
        total = wav.shape[1]
        for start in range(0, total, step):
            stop = min(total, start + step)
            if sample_format == 's16':
                chunk = array[:, start * channels: stop * channels]
            else:
                chunk = array[:, start:stop]
            frame = _av().AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=sample_format,
                                                  layout=_layout(channels))
            frame.sample_rate = sample_rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _ffmpeg_encode(path: Path, wav: torch.Tensor, sample_rate: int, flags: tp.List[str]) -> None:
    """Pipe float32 samples to the ffmpeg binary (used for codecs PyAV's build lacks)."""
    ffmpeg = shutil.which('ffmpeg')
    if ffmpeg is None:
        raise RuntimeError("Writing this format needs the ffmpeg binary (e.g. apt-get install ffmpeg).")
    command = [ffmpeg, '-loglevel', 'error', '-y', '-f', 'f32le', '-ar', str(sample_rate),
               '-ac', str(wav.shape[0]), '-i', '-'] + flags + [str(path)]
    data = wav.t().contiguous().float().numpy().tobytes()
    proc = subprocess.run(command, input=data, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed to write {path}: {proc.stderr.decode(errors='replace').strip()}")


def _has_av_encoder(name: str) -> bool:
    try:
        _av().codec.Codec(name, 'w')
    except Exception:
        return False
    return True


def format_write_problem(format: str) -> tp.Optional[str]:
    """Why audio in `format` cannot be written here (a missing encoder), or None if it can.

    Lets callers check before spending time on generation."""
    if format not in _FORMATS:
        return f"unknown format {format!r}: use wav, mp3, ogg or flac"
    codec = _FORMATS[format][1]
    if _has_av_encoder(codec):
        return None
    if format == 'ogg':
        if shutil.which('ffmpeg') is not None:
            return None
        return ("writing ogg needs PyAV built with libvorbis or the ffmpeg binary (e.g. apt-get install ffmpeg); "
                "use --format wav or flac instead")
    return f"this PyAV build has no {codec} encoder for {format}; use wav or flac instead"


def audio_write(stem_name: PathLike, wav: torch.Tensor, sample_rate: int, format: str = 'wav',
                mp3_rate: int = 320, ogg_rate: tp.Optional[int] = None, normalize: bool = True,
                strategy: str = 'peak', peak_clip_headroom_db: float = 1, rms_headroom_db: float = 18,
                loudness_headroom_db: float = 14, loudness_compressor: bool = False,
                log_clipping: bool = True, make_parent_dir: bool = True, add_suffix: bool = True) -> Path:
    """Normalise and write `wav` ([C, T] or [T], float) to `stem_name` + suffix; return the path.

    Formats: 'wav' (16-bit PCM), 'mp3' (`mp3_rate` kbps), 'ogg' (Vorbis, optional `ogg_rate`
    kbps), 'flac' (16-bit). The file is written under a temporary name and renamed, so a
    failure never leaves a partial file. See `normalize_audio` for the normalisation options.
    """
    if not isinstance(wav, torch.Tensor) or not wav.dtype.is_floating_point:
        raise ValueError("audio_write expects a floating point torch.Tensor.")
    if wav.dim() == 1:
        wav = wav[None]
    elif wav.dim() > 2:
        raise ValueError(f"audio_write expects a wav of shape [C, T] or [T], got {tuple(wav.shape)}; "
                         "write batch items one by one.")
    if wav.shape[-1] == 0:
        raise ValueError("audio_write got an empty waveform.")
    if not wav.isfinite().all():
        raise ValueError("audio_write got non-finite values (NaN or inf) in the waveform.")
    if format not in ('wav', 'mp3', 'ogg', 'flac'):
        raise ValueError(f"Invalid format {format!r}: use wav, mp3, ogg or flac.")
    wav = normalize_audio(wav.detach().cpu().float(), normalize, strategy, peak_clip_headroom_db,
                          rms_headroom_db, loudness_headroom_db, loudness_compressor,
                          log_clipping=log_clipping, sample_rate=sample_rate, stem_name=str(stem_name))
    suffix = f'.{format}' if add_suffix else ''
    if suffix and str(stem_name).lower().endswith(suffix):
        # AudioCraft appends the suffix too: 'y.wav' becomes 'y.wav.wav'. Kept, but said.
        logger.warning("audio_write appends the format's suffix: %r is written as %r. Pass the stem without "
                       "%r, or add_suffix=False.", str(stem_name), str(stem_name) + suffix, suffix)
    path = Path(str(stem_name) + suffix)
    if make_parent_dir:
        path.parent.mkdir(exist_ok=True, parents=True)
    # A unique sibling name (not mkstemp, whose 0600 mode would leak into the result) keeps
    # the write atomic while the file gets the usual umask-derived permissions.
    tmp_path = path.with_name(f'.{path.name}.{uuid.uuid4().hex}.tmp')
    try:
        if format == 'ogg' and not _has_av_encoder('libvorbis'):
            flags = ['-f', 'ogg', '-c:a', 'libvorbis'] + (['-b:a', f'{ogg_rate}k'] if ogg_rate else [])
            _ffmpeg_encode(tmp_path, wav, sample_rate, flags)
        else:
            bitrate = {'mp3': f'{mp3_rate}k', 'ogg': f'{ogg_rate}k' if ogg_rate else None}.get(format)
            _encode_av(tmp_path, wav, sample_rate, format, bitrate=bitrate)
        os.replace(tmp_path, path)
    except Exception as exc:
        if tmp_path.exists():
            tmp_path.unlink()
        if isinstance(exc, OSError) and str(path) not in str(exc):
            # PyAV's errors name the temporary file at best: say which file could not be written.
            errno = exc.errno if isinstance(exc.errno, int) else None
            raise OSError(errno, f"Could not write audio file {str(path)!r} ({type(exc).__name__}: {exc}); "
                                 "check that its folder exists and is writable.") from exc
        raise
    return path


_AAC_PRIMING = 1024  # encoder delay of ffmpeg's AAC encoder, in samples


def compress(wav: torch.Tensor, sr: int, target_format: str = 'mp3',
             bitrate: str = '128k') -> tp.Tuple[torch.Tensor, int]:
    """Encode `wav` [C, T] (or [B, C, T]) with a lossy codec in memory and decode it back.

    Useful to simulate codec artefacts (augmentation, robustness metrics). Returns the
    decoded waveform, trimmed or padded to the input length, and its sample rate.
    """
    if target_format not in ('mp3', 'flac', 'aac', 'wav'):
        raise ValueError(f"Unsupported target format '{target_format}': use mp3, aac, flac or wav.")
    batched = wav.dim() == 3
    items = wav if batched else wav[None]
    out = []
    for item in items:
        buffer = io.BytesIO()
        _encode_av(buffer, item.detach().cpu().float(), sr, target_format, bitrate=bitrate)
        buffer.seek(0)
        decoded, out_sr = _decode_av(buffer, name=f'<{target_format} buffer>')
        decoded = convert_audio(decoded, out_sr, sr, item.shape[0]) if out_sr != sr else decoded
        length = item.shape[-1]
        if target_format == 'aac' and decoded.shape[-1] >= length + _AAC_PRIMING:
            # The decoder kept the encoder's priming samples: drop them to stay time-aligned.
            decoded = decoded[..., _AAC_PRIMING:]
        decoded = torch.nn.functional.pad(decoded[..., :length], (0, max(0, length - decoded.shape[-1])))
        out.append(decoded.to(wav.device))
    result = torch.stack(out)
    return (result if batched else result[0]), sr


def get_mp3(wav_tensor: torch.Tensor, sr: int, bitrate: str = "128k") -> torch.Tensor:
    """`wav_tensor` [B, C, T] after an MP3 round trip at `bitrate`."""
    return compress(wav_tensor, sr, 'mp3', bitrate)[0]


def get_aac(wav_tensor: torch.Tensor, sr: int, bitrate: str = "128k") -> torch.Tensor:
    """`wav_tensor` [B, C, T] after an AAC round trip at `bitrate`."""
    return compress(wav_tensor, sr, 'aac', bitrate)[0]
