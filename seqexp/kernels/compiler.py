"""Build a C++ source of seqexp's into a shared library for this machine, once, and cache it.

The compiler is ``$CXX``, else ``c++``; the library is built for this CPU (``-march=native``) and
cached under ``$SEQEXP_CACHE`` (default ``~/.cache/seqexp``), keyed by the source, the
compiler, the flags and the CPU's features.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# -ffast-math lets glibc's vector exp and tanh in; the sources must not rely on NaN or ∞ tests.
# -fopenmp links libgomp, which in a torch process is the one torch loaded: one thread pool.
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-std=c++17", "-shared", "-fPIC")


def cache_dir() -> Path:
    return Path(os.environ.get("SEQEXP_CACHE", Path.home() / ".cache" / "seqexp"))


def cpu_features() -> str:
    """The CPU's feature flags (Linux), so that a cache shared between machines stays right."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line for line in lines if line.startswith("flags")), "")


def build(source: Path, *flags: str) -> Path:
    """The shared library built from ``source``, with ``flags`` after the source (headers and
    libraries); raises ``OSError`` saying why it cannot be built."""
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None:
        raise OSError(f"no C++ compiler {os.environ.get('CXX', 'c++')!r}: set CXX or install g++")
    inputs = [source.read_text(), compiler, *FLAGS, *flags, cpu_features()]
    key = hashlib.sha256("\n".join(inputs).encode())
    library = cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its place, then renamed: the processes of a sweep may build it at once.
    with tempfile.NamedTemporaryFile(dir=library.parent, suffix=".so", delete=False) as partial:
        built = Path(partial.name)
    command = [compiler, *FLAGS, str(source), "-o", str(built), *flags]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        built.unlink()
        raise OSError(f"{compiler} failed on {source.name}: {result.stderr.strip()}")
    built.replace(library)
    return library
