"""Loading compiled dependencies with an error that says which versions clash and how to fix it.

A wheel with a compiled extension (PyAV, torchaudio, sentencepiece...) built against another
release of torch or FFmpeg fails at import with an obscure `OSError: undefined symbol`. The library
imports such packages only where they are needed, through `import_compiled`, so one broken wheel
disables one feature instead of `import audiocraft`.
"""
import importlib
import importlib.metadata
import sys
import types
import typing as tp

# PyPI distribution names of the importable modules, where they differ.
_DISTRIBUTIONS = {"av": "av", "torch": "torch", "torchaudio": "torchaudio", "sentencepiece": "sentencepiece"}


def installed_version(distribution: str) -> tp.Optional[str]:
    """Installed version of a PyPI distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class CompiledDependencyError(ImportError):
    """A compiled dependency is missing or does not load with the installed packages."""


def describe_failure(module: str, purpose: str, exc: BaseException) -> str:
    """Message naming the failing package, its version, torch's and Python's, and the fix."""
    distribution = _DISTRIBUTIONS.get(module, module)
    version = installed_version(distribution)
    torch_version = installed_version("torch")
    python = ".".join(map(str, sys.version_info[:3]))
    if version is None:
        return (f"`{module}` is needed for {purpose} but is not installed. "
                f"Install it with: pip install {distribution}")
    return (f"`{module}` ({distribution} {version}) is installed but failed to load, so {purpose} is "
            f"unavailable. Installed alongside torch {torch_version} on Python {python}: the wheels "
            f"were built for different releases ({type(exc).__name__}: {exc}). Reinstall a matching set: "
            f"from a clone of this repository, `pip install -c requirements-lock.txt --force-reinstall "
            f"{distribution} torch`; otherwise `pip install --force-reinstall --no-cache-dir {distribution}` "
            f"so pip picks a build for torch {torch_version}.")


def import_compiled(module: str, purpose: str) -> types.ModuleType:
    """Import `module`, turning a load failure into a `CompiledDependencyError` that says what to do."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        raise CompiledDependencyError(describe_failure(module, purpose, exc)) from exc
