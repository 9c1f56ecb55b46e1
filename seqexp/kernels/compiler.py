"""Build a C++ source of seqexp's into a shared library for this machine, once, cache it, and load it
without touching the process's floating point.

The compiler is ``$CXX``, else ``c++``; the library is built for this CPU (``-march=native``) and
cached under ``$SEQEXP_CACHE`` (default ``~/.cache/seqexp``), keyed by the source, the compiler and
its version, the flags and the CPU's features.

The source is compiled with ``-ffast-math`` but linked without it: given ``-ffast-math``,
``-Ofast`` or ``-funsafe-math-optimizations`` at link time, GCC (12 at least, even with
``-shared``) and clang link ``crtfastmath.o``, whose constructor sets flush-to-zero and
denormals-are-zero for the thread that loads the library and every thread it starts afterwards.
:func:`load` checks that a library did not, whatever the compiler did.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

# -ffast-math lets glibc's vector exp and tanh in; the sources must not rely on NaN or ∞ tests.
# -fopenmp links libgomp, which in a torch process is the one torch loaded: one thread pool.
COMPILE_FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-std=c++17", "-fPIC")
# No fast-math flag here: the driver would add crtfastmath.o (see the module's docstring).
LINK_FLAGS = ("-shared", "-fopenmp")


def cache_dir() -> Path:
    return Path(os.environ.get("SEQEXP_CACHE", Path.home() / ".cache" / "seqexp"))


def cpu_features() -> str:
    """The CPU's feature flags (Linux), so that a cache shared between machines stays right."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    return next((line for line in lines if line.startswith("flags")), "")


def compiler_version(compiler: str) -> str:
    """What ``compiler --version`` says, so that an upgraded compiler builds anew."""
    result = subprocess.run([compiler, "--version"], capture_output=True, text=True)
    return result.stdout


def run_compiler(command: list[str], source: Path) -> None:
    """Run one compiler ``command``; raises ``OSError`` with its messages if it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise OSError(f"{command[0]} failed on {source.name}: {result.stderr.strip()}")


def build(source: Path, compile_flags: Sequence[str] = (), link_flags: Sequence[str] = ()) -> Path:
    """The shared library built from ``source``, with ``compile_flags`` (e.g. headers) added to
    :data:`COMPILE_FLAGS` and ``link_flags`` (libraries) to :data:`LINK_FLAGS`; raises ``OSError``
    saying why it cannot be built."""
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None:
        raise OSError(f"no C++ compiler {os.environ.get('CXX', 'c++')!r}: set CXX or install g++")
    compile_command = [*COMPILE_FLAGS, *compile_flags]
    inputs = [source.read_text(), compiler, compiler_version(compiler), cpu_features()]
    key = hashlib.sha256("\n".join([*inputs, *compile_command, "then", *LINK_FLAGS, *link_flags]).encode())
    library = cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
    if library.exists():
        return library
    library.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its place, then renamed: the processes of a sweep may build it at once.
    with tempfile.TemporaryDirectory(dir=library.parent) as scratch:
        objects, built = Path(scratch, f"{source.stem}.o"), Path(scratch, library.name)
        run_compiler([compiler, *compile_command, "-c", str(source), "-o", str(objects)], source)
        run_compiler([compiler, *LINK_FLAGS, str(objects), "-o", str(built), *link_flags], source)
        built.replace(library)
    return library


def subnormals_survive() -> bool:
    """Whether float32 arithmetic in this thread keeps a subnormal: neither flush-to-zero nor
    denormals-are-zero is set."""
    subnormal = torch.tensor(1e-39, dtype=torch.float32)
    return bool(subnormal * 1.5 != 0)


def load(library: Path) -> ctypes.CDLL:
    """``library`` loaded; raises ``OSError`` if loading it changed how this thread treats
    subnormals (the change undone first). Where subnormals were already flushed before, as
    ``torch.set_flush_denormal(True)`` does, there is nothing to compare with."""
    survived = subnormals_survive()
    loaded = ctypes.CDLL(str(library))
    if survived and not subnormals_survive():
        torch.set_flush_denormal(False)  # back to what it was: subnormals kept
        raise OSError(
            f"loading {library.name} set flush-to-zero for this process (its compiler linked "
            "crtfastmath.o); the setting is undone and the library left unused"
        )
    return loaded
