"""The compiled membership pass (engine/_ckernel.c), when it was built at install.

The build (hatch_build.py) compiles it where a C compiler is found; without it, or with a
build from another version of the source, :data:`KERNEL` is None and the engine runs the
same pass in numpy (engine/_members.py), which is the reference: both give identical
results (tests/unit/test_properties.py runs the engine both ways).
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["KERNEL", "KERNEL_VERSION"]

KERNEL_VERSION = 1  # the version _ckernel.c says it implements (its KERNEL_VERSION)


def _load() -> ModuleType | None:
    try:
        from coverwatch.engine import _ckernel  # type: ignore[attr-defined]
    except ImportError:
        return None
    kernel: ModuleType = _ckernel
    return kernel if getattr(kernel, "VERSION", None) == KERNEL_VERSION else None


KERNEL = _load()
