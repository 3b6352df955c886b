"""A mixin giving each test class its own scratch directory."""
import os
import tempfile
import typing as tp


class TempDirMixin:
    """Per-class temporary directory, removed when the class is done.

    Set AUDIOCRAFT_TEST_DIR to keep the files somewhere for inspection instead.
    """
    temp_dir_: tp.Optional[tempfile.TemporaryDirectory] = None

    @classmethod
    def get_base_temp_dir(cls) -> str:
        override = os.environ.get("AUDIOCRAFT_TEST_DIR")
        if override:
            return override
        if cls.temp_dir_ is None:
            cls.temp_dir_ = tempfile.TemporaryDirectory()
        return cls.temp_dir_.name

    @classmethod
    def teardown_class(cls) -> None:
        if cls.temp_dir_ is not None:
            try:
                cls.temp_dir_.cleanup()
            except PermissionError:
                pass
            cls.temp_dir_ = None

    # unittest spelling of the same hook, for TestCase subclasses.
    tearDownClass = teardown_class

    @property
    def id(self) -> str:
        return self.__class__.__name__

    def get_temp_path(self, *paths: str) -> str:
        """A file path under this class's scratch dir; its parent folder exists."""
        path = os.path.join(self.get_base_temp_dir(), self.id, *paths)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def get_temp_dir(self, *paths: str) -> str:
        """A folder under this class's scratch dir, created."""
        path = os.path.join(self.get_base_temp_dir(), self.id, *paths)
        os.makedirs(path, exist_ok=True)
        return path
