"""Code versions of assets: a hash of the source files that build them, so the UI marks an
asset stale when its code changed since its last materialisation."""

import hashlib
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_SUFFIXES = {".py", ".sql", ".yaml", ".yml"}


@cache
def source_version(*paths: str) -> str:
    """Short hash of the files at these repository paths (directories: every source file under
    them). Files are read, not imported, so nothing heavy loads with the definitions."""
    digest = hashlib.sha256()
    for path in paths:
        root = REPO / path
        if not root.exists():
            raise FileNotFoundError(f"code version of a missing path: {root}")
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for file in files:
            if file.is_file() and file.suffix in _SUFFIXES and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(REPO)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:12]
