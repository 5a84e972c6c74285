"""Importing `ml` caps glibc's malloc arenas (ml/__init__.py), unless MALLOC_ARENA_MAX says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Eight threads each take memory from malloc and stay alive together; glibc gives each its
# own arena up to its limit (8 per core by default). malloc_info then lists the arenas.
PROBE = """
import ctypes, sys, tempfile, threading
if sys.argv[1] == "ml":
    import ml
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
taken, done = threading.Barrier(9), threading.Barrier(9)
def work():
    libc.malloc(4096)
    taken.wait()
    done.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
taken.wait()
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    handle = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(open(out.name).read())
done.wait()
"""


def arenas(mode: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env=environ,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return len(re.findall(r'<heap nr="\d+">', out))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_importing_ml_caps_the_arenas_threads_get_unless_the_environment_says() -> None:
    from ml import MALLOC_ARENAS

    assert arenas("plain") > MALLOC_ARENAS  # the probe sees one arena per thread
    assert arenas("ml") == MALLOC_ARENAS
    assert arenas("ml", MALLOC_ARENA_MAX="4") == 4
