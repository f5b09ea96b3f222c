"""The compiled membership pass (engine/_ckernel.c), when it was built at install.

The build (hatch_build.py) compiles it where a C compiler is found; without it, or with a
build from another version of the source, :data:`KERNEL` is None and the engine runs the
same pass in numpy (engine/_members.py), which is the reference: both give identical
results (tests/unit/test_properties.py runs the engine both ways).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import numpy.typing as npt

__all__ = ["KERNEL", "KERNEL_VERSION", "scratch"]

KERNEL_VERSION = 6  # the version _ckernel.c says it implements (its KERNEL_VERSION)


def _load() -> ModuleType | None:
    try:
        # An extension module, present only if built: no .py for the layout checks to see.
        kernel = importlib.import_module("coverwatch.engine._ckernel")
    except ImportError:
        return None
    return kernel if getattr(kernel, "VERSION", None) == KERNEL_VERSION else None


KERNEL = _load()


_scratch: list[npt.NDArray[np.uint8]] = [np.zeros(0, np.uint8), np.zeros(0, np.uint8)]


def scratch(n_officers: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The kernel's working memory for ``n_officers``: (officer states, marks, all 0).

    Shared by every engine: a call holds the GIL from start to end and leaves the
    marks at 0, and reusing the pages spares each window their faults.
    """
    assert KERNEL is not None
    size = n_officers * int(KERNEL.OFFICER_BYTES) + 64  # + 64: states aligned to cache lines
    if len(_scratch[0]) < size:
        _scratch[0] = np.zeros(2 * size, np.uint8)
        _scratch[1] = np.zeros(2 * n_officers, np.uint8)
    return _scratch[0], _scratch[1]
