"""Audio datasets described by jsonl manifests, and the manifest builder.

A manifest (`data.jsonl` or `data.jsonl.gz`) holds one `AudioMeta` per line. Build one with:

    python -m audiocraft.data.audio_dataset <audio folder> <out>/data.jsonl.gz

Relative paths in a manifest are resolved against the directory the command was started
from (Hydra changes the working directory during training; Dora remembers the original one).
"""
import argparse
import copy
from concurrent.futures import ThreadPoolExecutor, Future
from dataclasses import dataclass, fields
import gzip
import json
import logging
import os
from pathlib import Path
import random
import sys
import typing as tp

import torch
import torch.nn.functional as F

from .audio import audio_info, audio_read
from .audio_utils import convert_audio
from .zip import PathInZip
from ..utils.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

DEFAULT_EXTS = ['.wav', '.mp3', '.flac', '.ogg', '.m4a']
READ_ERROR_MODES = ('skip', 'raise')


@dataclass(order=True)
class BaseInfo:
    """Dataclass that round-trips through plain dicts (unknown keys are ignored)."""

    @classmethod
    def _dict2fields(cls, dictionary: dict) -> dict:
        return {f.name: dictionary[f.name] for f in fields(cls) if f.name in dictionary}

    @classmethod
    def from_dict(cls, dictionary: dict):
        return cls(**cls._dict2fields(dictionary))

    def to_dict(self) -> dict:
        return {f.name: self.__getattribute__(f.name) for f in fields(self)}


@dataclass(order=True)
class AudioMeta(BaseInfo):
    """One audio file of a manifest."""
    path: str
    duration: float
    sample_rate: int
    amplitude: tp.Optional[float] = None
    weight: tp.Optional[float] = None
    # Extra information stored in a zip archive, as '<zip path>:<path inside zip>'.
    info_path: tp.Optional[PathInZip] = None

    @classmethod
    def from_dict(cls, dictionary: dict) -> "AudioMeta":
        base = cls._dict2fields(dictionary)
        if base.get('info_path') is not None:
            base['info_path'] = PathInZip(base['info_path'])
        return cls(**base)

    def to_dict(self) -> dict:
        d = super().to_dict()
        if d['info_path'] is not None:
            d['info_path'] = str(d['info_path'])
        return d


@dataclass(order=True)
class SegmentInfo(BaseInfo):
    """Where a training segment comes from and how it was processed."""
    meta: AudioMeta
    seek_time: float
    # Values below describe the segment after conversion to the dataset rate / channels.
    n_frames: int  # frames of actual audio, padding excluded
    total_frames: int  # frames including padding
    sample_rate: int
    channels: int


def _to_absolute(path: str) -> str:
    try:
        from dora import to_absolute_path
    except ImportError:  # dora is optional outside of training
        return os.path.abspath(path)
    return str(to_absolute_path(path))


def _resolve_audio_meta(m: AudioMeta, fast: bool = True, base_dir: tp.Optional[Path] = None) -> AudioMeta:
    """Make the paths of `m` absolute: relative to the original working directory, else to `base_dir`
    or its closest parent where the file exists."""
    def is_abs(p: str) -> bool:
        return p.startswith('/') if fast else os.path.isabs(p)

    def resolve(p: str) -> str:
        if is_abs(p):
            return p
        candidate = _to_absolute(p)
        if base_dir is not None and not os.path.exists(candidate):
            # e.g. a manifest in <repo>/egs/x/ listing paths relative to <repo>, read from elsewhere
            for folder in [base_dir, *base_dir.parents]:
                if (folder / p).exists():
                    return str((folder / p).resolve())
        return candidate

    m.path = resolve(m.path)
    if m.info_path is not None:
        m.info_path.zip_path = resolve(m.info_path.zip_path)
    return m


def _get_audio_meta(file_path: str, minimal: bool = True) -> AudioMeta:
    """AudioMeta of one file; `minimal=False` also decodes it to get its peak amplitude."""
    info = audio_info(file_path)
    amplitude: tp.Optional[float] = None
    if not minimal:
        wav, _ = audio_read(file_path)
        amplitude = wav.abs().max().item()
    return AudioMeta(file_path, info.duration, info.sample_rate, amplitude)


def find_audio_files(path: tp.Union[Path, str], exts: tp.List[str] = DEFAULT_EXTS,
                     resolve: bool = True, minimal: bool = True, progress: bool = False,
                     workers: int = 0, skip_errors: bool = False) -> tp.List[AudioMeta]:
    """Build the audio metadata of every file with an extension in `exts` under `path`.

    Args:
        path: folder to scan recursively.
        exts: audio file extensions to keep.
        resolve: make paths absolute.
        minimal: only read headers (no amplitude, much faster).
        progress: print progress to stderr.
        workers: threads reading metadata in parallel (0: in this thread).
        skip_errors: skip (with a warning) files that cannot be decoded instead of raising.
    """
    audio_files = []
    exts_lower = [e.lower() for e in exts]
    for root, _, files in os.walk(path, followlinks=True):
        for file in files:
            full_path = Path(root) / file
            if full_path.suffix.lower() in exts_lower:
                audio_files.append(full_path)

    def _read(file_path: Path) -> tp.Optional[AudioMeta]:
        try:
            return _get_audio_meta(str(file_path), minimal)
        except Exception as exc:
            if skip_errors:
                logger.warning("Skipping undecodable audio file %s: %r", file_path, exc)
                return None
            raise RuntimeError(f"Could not read audio file {file_path}: {exc!r}. Remove or fix it, "
                               "or skip such files (skip_errors=True / --skip_errors).") from exc

    futures: tp.List[tp.Union[Future, Path]] = []
    pool: tp.Optional[ThreadPoolExecutor] = ThreadPoolExecutor(workers) if workers > 0 else None
    meta: tp.List[AudioMeta] = []
    try:
        for file_path in audio_files:
            futures.append(pool.submit(_read, file_path) if pool is not None else file_path)
        for idx, item in enumerate(futures):
            m = item.result() if isinstance(item, Future) else _read(item)
            if m is not None:
                if resolve:
                    m = _resolve_audio_meta(m)
                meta.append(m)
            if progress:
                print(format(idx + 1, ' 8d'), "/", len(audio_files), end='\r', file=sys.stderr)
    finally:
        if pool is not None:
            pool.shutdown()
    if progress:
        print(file=sys.stderr)
    meta.sort()
    return meta


def _open_manifest(path: tp.Union[str, Path], mode: str, gz: tp.Optional[bool] = None):
    if gz is None:
        gz = str(path).lower().endswith('.gz')
    return gzip.open(path, mode) if gz else open(path, mode)


def load_audio_meta(path: tp.Union[str, Path], resolve: bool = True, fast: bool = True) -> tp.List[AudioMeta]:
    """Load the AudioMeta list of a jsonl / jsonl.gz manifest."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Audio manifest {path} does not exist. Build it with "
                                "`python -m audiocraft.data.audio_dataset <audio folder> <manifest>`.")
    meta = []
    with _open_manifest(path, 'rb') as fp:
        for line_number, line in enumerate(fp, start=1):
            if not line.strip():
                continue
            try:
                m = AudioMeta.from_dict(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"Invalid entry line {line_number} of manifest {path}: {exc}. Each "
                                 "line must be a JSON object with path, duration and sample_rate.") from exc
            if resolve:
                m = _resolve_audio_meta(m, fast=fast, base_dir=path.parent)
            meta.append(m)
    return meta


def save_audio_meta(path: tp.Union[str, Path], meta: tp.List[AudioMeta]) -> None:
    """Write a jsonl (or jsonl.gz) manifest atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    with _open_manifest(tmp, 'wb', gz=path.name.lower().endswith('.gz')) as fp:
        for m in meta:
            fp.write((json.dumps(m.to_dict()) + '\n').encode('utf-8'))
    os.replace(tmp, path)


def _manifest_from_root(root: tp.Union[str, Path]) -> Path:
    root = Path(_to_absolute(str(root)))
    if root.is_dir():
        for name in ('data.jsonl', 'data.jsonl.gz'):
            if (root / name).exists():
                return root / name
        raise FileNotFoundError(
            f"No manifest in {root}: expected data.jsonl or data.jsonl.gz. Build one with "
            f"`python -m audiocraft.data.audio_dataset <audio folder> {root}/data.jsonl`.")
    if not root.exists():
        raise FileNotFoundError(
            f"Dataset manifest {root} does not exist. Point the datasource to a folder holding "
            "data.jsonl(.gz) or to a manifest file.")
    return root


class AudioDataset:
    """Segments of audio files listed in a manifest.

    With `segment_duration=None`, item `i` is the whole file `i`. Otherwise each item is a
    segment of `segment_duration` seconds from a randomly chosen file (chosen with
    probability proportional to duration and/or weight), at a random position.

    Args:
        meta: the audio files.
        segment_duration: segment length in seconds; None for whole files.
        shuffle: draw new segments every epoch (else item `i` is always the same segment).
        num_samples: dataset length when segmenting.
        sample_rate: target sample rate; audio is resampled to it.
        channels: target channels; audio is down/up-mixed to it.
        pad: zero pad short segments to `segment_duration` (and whole files when collating).
        sample_on_duration: sample files proportionally to their duration.
        sample_on_weight: sample files proportionally to their manifest weight.
        min_segment_ratio: shortest allowed segment, as a fraction of `segment_duration`.
        max_read_retry: files tried before giving up when reads fail.
        return_info: return `(wav, SegmentInfo)` instead of `wav`.
        min_audio_duration / max_audio_duration: drop files outside these bounds.
        shuffle_seed: extra seed to draw different segments for the same epoch.
        load_wav: when False, return silence of the right shape (for cached-token training).
        permutation_on_files: walk files in a per-epoch random permutation instead of sampling.
        on_read_error: 'skip' (warn and draw another file, up to `max_read_retry` times) or
            'raise' (fail on the first undecodable file).
    """
    def __init__(self, meta: tp.List[AudioMeta], segment_duration: tp.Optional[float] = None,
                 shuffle: bool = True, num_samples: tp.Optional[int] = 10_000, sample_rate: int = 48_000,
                 channels: int = 2, pad: bool = True, sample_on_duration: bool = True,
                 sample_on_weight: bool = True, min_segment_ratio: float = 0.5, max_read_retry: int = 10,
                 return_info: bool = False, min_audio_duration: tp.Optional[float] = None,
                 max_audio_duration: tp.Optional[float] = None, shuffle_seed: int = 0,
                 load_wav: bool = True, permutation_on_files: bool = False, on_read_error: str = 'skip'):
        if len(meta) == 0:
            raise InvalidArgumentError("No audio meta provided to AudioDataset: the manifest is empty.")
        if segment_duration is not None and segment_duration <= 0:
            raise InvalidArgumentError(f"segment_duration must be positive or None, got {segment_duration}.")
        if min_segment_ratio < 0:
            raise InvalidArgumentError(f"min_segment_ratio must be >= 0, got {min_segment_ratio}.")
        if min_audio_duration is not None and max_audio_duration is not None \
                and min_audio_duration > max_audio_duration:
            raise InvalidArgumentError("min_audio_duration must not exceed max_audio_duration.")
        if on_read_error not in READ_ERROR_MODES:
            raise ValueError(f"on_read_error must be one of {READ_ERROR_MODES}, got {on_read_error!r}.")
        self.segment_duration = segment_duration
        self.min_segment_ratio = min_segment_ratio
        self.max_audio_duration = max_audio_duration
        self.min_audio_duration = min_audio_duration
        self.meta: tp.List[AudioMeta] = self._filter_duration(meta)
        if len(self.meta) == 0:
            raise InvalidArgumentError("Every file was filtered out by min/max_audio_duration.")
        self.total_duration = sum(d.duration for d in self.meta)
        if segment_duration is None:
            num_samples = len(self.meta)
        if num_samples is None:
            raise ValueError("num_samples must be set when segment_duration is set.")
        self.num_samples = int(num_samples)
        self.shuffle = shuffle
        self.sample_rate = sample_rate
        self.channels = channels
        self.pad = pad
        self.sample_on_weight = sample_on_weight
        self.sample_on_duration = sample_on_duration
        self.sampling_probabilities = self._get_sampling_probabilities()
        self.max_read_retry = max(1, max_read_retry)
        self.return_info = return_info
        self.shuffle_seed = shuffle_seed
        self.current_epoch: tp.Optional[int] = None
        self.load_wav = load_wav
        self.on_read_error = on_read_error
        if not load_wav and segment_duration is None:
            raise ValueError("load_wav=False requires a segment_duration.")
        self.permutation_on_files = permutation_on_files
        if permutation_on_files and (sample_on_duration or sample_on_weight or not shuffle):
            raise ValueError("permutation_on_files requires shuffle=True and "
                             "sample_on_duration=sample_on_weight=False.")

    def start_epoch(self, epoch: int) -> None:
        self.current_epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def _get_sampling_probabilities(self, normalized: bool = True) -> torch.Tensor:
        scores: tp.List[float] = []
        for file_meta in self.meta:
            score = 1.
            if self.sample_on_weight and file_meta.weight is not None:
                score *= file_meta.weight
            if self.sample_on_duration:
                score *= file_meta.duration
            scores.append(score)
        probabilities = torch.tensor(scores)
        if normalized:
            probabilities /= probabilities.sum()
        return probabilities

    @staticmethod
    def _get_file_permutation(num_files: int, permutation_index: int, base_seed: int) -> torch.Tensor:
        rng = torch.Generator()
        rng.manual_seed(base_seed + permutation_index)
        return torch.randperm(num_files, generator=rng)

    def sample_file(self, index: int, rng: torch.Generator) -> AudioMeta:
        """Choose the file that item `index` is read from."""
        if self.permutation_on_files:
            if self.current_epoch is None:
                raise RuntimeError("permutation_on_files needs start_epoch() to be called first.")
            total_index = self.current_epoch * len(self) + index
            permutation = self._get_file_permutation(
                len(self.meta), total_index // len(self.meta), self.shuffle_seed)
            return self.meta[int(permutation[total_index % len(self.meta)])]
        if not self.sample_on_weight and not self.sample_on_duration:
            file_index = int(torch.randint(len(self.sampling_probabilities), (1,), generator=rng).item())
        else:
            file_index = int(torch.multinomial(self.sampling_probabilities, 1, generator=rng).item())
        return self.meta[file_index]

    def _audio_read(self, path: str, seek_time: float = 0., duration: float = -1.) -> tp.Tuple[torch.Tensor, int]:
        if self.load_wav:
            return audio_read(path, seek_time, duration, pad=False)
        assert self.segment_duration is not None
        return torch.zeros(self.channels, int(self.sample_rate * self.segment_duration)), self.sample_rate

    def _read_error(self, path: str, exc: Exception) -> RuntimeError:
        return RuntimeError(f"Could not decode audio file {path}: {exc!r}. Remove it from the manifest "
                            "or fix it (on_read_error='skip' draws another file instead).")

    def _convert(self, wav: torch.Tensor, sample_rate: int, path: str) -> torch.Tensor:
        try:
            return convert_audio(wav, sample_rate, self.sample_rate, self.channels)
        except ValueError as exc:
            raise ValueError(f"Cannot convert {path} ({sample_rate} Hz, {wav.shape[0]} channels) to the dataset "
                             f"format ({self.sample_rate} Hz, {self.channels} channels): {exc}") from exc

    def _segment_rng(self, index: int) -> torch.Generator:
        rng = torch.Generator()
        if self.shuffle:
            if self.current_epoch is None:
                rng.manual_seed(index + self.num_samples * random.randint(0, 2**24))
            else:
                rng.manual_seed(index + self.num_samples * (self.current_epoch + self.shuffle_seed))
        else:
            rng.manual_seed(index)
        return rng

    def __getitem__(self, index: int) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, SegmentInfo]]:
        if self.segment_duration is None:
            file_meta = self.meta[index]
            try:
                out, sr = self._audio_read(file_meta.path)
            except Exception as exc:
                raise self._read_error(file_meta.path, exc) from exc
            out = self._convert(out, sr, file_meta.path)
            n_frames = out.shape[-1]
            segment_info = SegmentInfo(file_meta, seek_time=0., n_frames=n_frames, total_frames=n_frames,
                                       sample_rate=self.sample_rate, channels=out.shape[0])
        else:
            rng = self._segment_rng(index)
            for retry in range(self.max_read_retry):
                file_meta = self.sample_file(index, rng)
                # Some variance in position even for files shorter than a segment,
                # without ever producing an (almost) empty segment.
                max_seek = max(0, file_meta.duration - self.segment_duration * self.min_segment_ratio)
                seek_time = torch.rand(1, generator=rng).item() * max_seek
                try:
                    out, sr = self._audio_read(file_meta.path, seek_time, self.segment_duration)
                except Exception as exc:
                    if self.on_read_error == 'raise' or retry == self.max_read_retry - 1:
                        raise self._read_error(file_meta.path, exc) from exc
                    logger.warning("Error opening file %s: %r, trying another file.", file_meta.path, exc)
                    continue
                out = self._convert(out, sr, file_meta.path)
                n_frames = out.shape[-1]
                target_frames = int(self.segment_duration * self.sample_rate)
                if self.pad:
                    out = F.pad(out, (0, target_frames - n_frames))
                segment_info = SegmentInfo(file_meta, seek_time, n_frames=n_frames, total_frames=target_frames,
                                           sample_rate=self.sample_rate, channels=out.shape[0])
                break
        if self.return_info:
            return out, segment_info
        return out

    def collater(self, samples: tp.List[tp.Any]) -> tp.Any:
        """Collate items; required as `collate_fn` when `return_info=True` or for whole files."""
        if self.segment_duration is None and len(samples) > 1 and not self.pad:
            raise ValueError("Batching whole files of different durations requires pad=True.")
        to_pad = self.segment_duration is None and self.pad
        wavs = [s[0] for s in samples] if self.return_info else list(samples)
        max_len = max(w.shape[-1] for w in wavs) if wavs else 0
        if to_pad:
            wavs = [F.pad(w, (0, max_len - w.shape[-1])) for w in wavs]
        wav = torch.stack(wavs)
        if not self.return_info:
            return wav
        segment_infos = [copy.deepcopy(info) for _, info in samples]
        if to_pad:
            for info in segment_infos:
                info.total_frames = max_len
        return wav, segment_infos

    def _filter_duration(self, meta: tp.List[AudioMeta]) -> tp.List[AudioMeta]:
        orig_len = len(meta)
        if self.min_audio_duration is not None:
            meta = [m for m in meta if m.duration >= self.min_audio_duration]
        if self.max_audio_duration is not None:
            meta = [m for m in meta if m.duration <= self.max_audio_duration]
        removed = 100 * (1 - float(len(meta)) / orig_len)
        msg = 'Removed %.2f percent of the data because it was too short or too long.' % removed
        (logger.debug if removed < 10 else logger.warning)(msg)
        return meta

    @classmethod
    def from_meta(cls, root: tp.Union[str, Path], **kwargs: tp.Any):
        """Dataset from a manifest file, or a folder holding data.jsonl / data.jsonl.gz."""
        return cls(load_audio_meta(_manifest_from_root(root)), **kwargs)

    @classmethod
    def from_path(cls, root: tp.Union[str, Path], minimal_meta: bool = True,
                  exts: tp.List[str] = DEFAULT_EXTS, **kwargs: tp.Any):
        """Dataset from a manifest file or from all the audio files found in a folder."""
        root = Path(root)
        if root.is_file():
            meta = load_audio_meta(root, resolve=True)
        elif root.is_dir():
            meta = find_audio_files(root, exts, minimal=minimal_meta, resolve=True)
        else:
            raise FileNotFoundError(f"{root} is neither a manifest file nor a folder of audio files.")
        return cls(meta, **kwargs)


def main(argv: tp.Optional[tp.List[str]] = None) -> None:
    """Manifest builder: `python -m audiocraft.data.audio_dataset <root> <out.jsonl[.gz]>`."""
    parser = argparse.ArgumentParser(
        prog='python -m audiocraft.data.audio_dataset',
        description='Generate a .jsonl(.gz) manifest by scanning a folder for audio files.')
    parser.add_argument('root', help='Root folder with all the audio files')
    parser.add_argument('output_meta_file', help='Output file to store the metadata, e.g. egs/x/data.jsonl')
    parser.add_argument('--complete', action='store_false', dest='minimal', default=True,
                        help='Also decode files to retrieve their amplitude (slower).')
    parser.add_argument('--resolve', action='store_true', default=False,
                        help='Store absolute paths instead of paths as found under root.')
    parser.add_argument('--skip_errors', action='store_true', default=False,
                        help='Skip undecodable files (with a warning) instead of failing.')
    parser.add_argument('--exts', nargs='+', default=DEFAULT_EXTS, help='Audio extensions to keep.')
    parser.add_argument('--workers', default=10, type=int, help='Number of threads reading metadata.')
    args = parser.parse_args(argv)
    if not Path(args.root).is_dir():
        parser.error(f"{args.root} is not a folder.")
    meta = find_audio_files(args.root, args.exts, progress=True, resolve=args.resolve,
                            minimal=args.minimal, workers=args.workers, skip_errors=args.skip_errors)
    if not meta:
        parser.error(f"No audio file with extension {args.exts} found under {args.root}.")
    save_audio_meta(args.output_meta_file, meta)
    print(f"Wrote {len(meta)} entries to {args.output_meta_file}", file=sys.stderr)


if __name__ == '__main__':
    main()
