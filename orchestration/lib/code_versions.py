"""Code versions of assets: a hash of the source files that build them, so the UI marks an
asset stale when its code changed since its last materialisation."""

import hashlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
_SUFFIXES = {".py", ".sql", ".yaml", ".yml", ".json"}


def _source(module: ModuleType | str) -> Path:
    """A module's file, found by name without importing it (the definitions stay light)."""
    if isinstance(module, ModuleType):
        return Path(module.__file__ or "")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"code version of a missing module: {module}")
    return Path(spec.origin)


def module_files(*modules: ModuleType | str) -> list[Path]:
    """The source files of modules (objects or dotted names); a package stands for every
    source file under it (its YAML and SQL included)."""
    files: list[Path] = []
    for module in modules:
        path = _source(module)
        if path.name == "__init__.py":
            files += [
                f
                for f in sorted(path.parent.rglob("*"))
                if f.is_file() and f.suffix in _SUFFIXES and "__pycache__" not in f.parts
            ]
        else:
            files.append(path)
    return files


def source_version(*modules: ModuleType | str, files: Iterable[Path] = ()) -> str:
    """Short hash of the source of these modules (and extra `files`)."""
    digest = hashlib.sha256()
    for file in sorted({*module_files(*modules), *(Path(f) for f in files)}):
        digest.update(str(file.resolve().relative_to(REPO)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]
