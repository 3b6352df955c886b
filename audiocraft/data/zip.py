"""Files stored inside zip archives, addressed as `<path to zip>:<path inside the zip>`."""
from dataclasses import dataclass
import io
import typing as tp
import zipfile

MODE = tp.Literal['r', 'w', 'x', 'a']


@dataclass(order=True)
class PathInZip:
    """A file inside a zip archive.

    Args:
        path: `<path_to_zip>:<relative_path_inside_zip>`, e.g. `/data/foo.zip:/meta/file1.json`.
    """
    INFO_PATH_SEP = ':'
    zip_path: str
    file_path: str

    def __init__(self, path: str) -> None:
        split_path = str(path).split(self.INFO_PATH_SEP)
        if len(split_path) != 2:
            raise ValueError(f"Invalid path in zip '{path}': expected '<zip path>:<path inside zip>'.")
        self.zip_path, self.file_path = split_path

    @classmethod
    def from_paths(cls, zip_path: str, file_path: str) -> "PathInZip":
        return cls(zip_path + cls.INFO_PATH_SEP + file_path)

    def __str__(self) -> str:
        return self.zip_path + self.INFO_PATH_SEP + self.file_path


def set_zip_cache_size(max_size: int) -> None:
    """Kept for AudioCraft API compatibility; does nothing.

    AudioCraft keeps a process-wide cache of open zip archives sized by this call. Here every
    read opens and closes its archive, so there is no shared state to size.
    """
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}.")


def open_file_in_zip(path_in_zip: PathInZip, mode: str = 'r') -> tp.IO[bytes]:
    """Read a file from a zip archive into memory and return it as a binary file object.

    The archive is closed before returning, so no file handle outlives the call.
    """
    if mode not in ('r', 'rb'):
        raise ValueError(f"open_file_in_zip only supports reading, got mode={mode!r}.")
    with zipfile.ZipFile(path_in_zip.zip_path, 'r') as zf:
        return io.BytesIO(zf.read(path_in_zip.file_path))
