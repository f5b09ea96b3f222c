"""Build hook: compiles the engine's optional membership pass (src/coverwatch/engine/_ckernel.c)
and the JSONL reader's optional fix-line pass (src/coverwatch/formats/_cjsonl.c).

Run by hatchling for every wheel, editable installs included (`make install`). The
engine uses the compiled pass when it imports and runs the same pass in numpy when it does
not, with identical results, so a machine without a C compiler still installs: the hook
then says so and carries on. The JSONL pass is optional in the same way (the reader's
pyarrow and per-line paths give the same events). ``python hatch_build.py`` builds it in place (a worktree run
with ``PYTHONPATH=src``).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script
    BuildHookInterface = object  # type: ignore[assignment,misc]

SOURCE = Path("src/coverwatch/engine/_ckernel.c")
JSONL_SOURCE = Path("src/coverwatch/formats/_cjsonl.c")


def compile_kernel(root: Path, source: Path = SOURCE) -> Path | None:
    """Compile a kernel next to its source; returns the module's path, or None."""
    src = root / source
    out = src.with_name(src.stem + str(sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    cc = shlex.split(str(sysconfig.get_config_var("CC") or "cc"))
    # No fused multiply-add: distances must round exactly as numpy's do. Without errno,
    # sqrt is the instruction (exact either way) rather than a call into libm.
    flags = ["-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-math-errno",
             "-fno-strict-aliasing",
             "-I", sysconfig.get_paths()["include"]]
    if sys.platform == "darwin":
        flags += ["-undefined", "dynamic_lookup"]
    tmp = out.with_suffix(".tmp")
    try:
        subprocess.run([*cc, *flags, "-o", str(tmp), str(src), "-lm"], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"coverwatch: {source.name} was not built ({exc}); "
              "coverwatch will use its Python path there (same results, slower)", file=sys.stderr)
        tmp.unlink(missing_ok=True)
        return None
    tmp.replace(out)
    return out


def compile_all(root: Path) -> list[Path]:
    """Both optional kernels; the ones built."""
    return [out for source in (SOURCE, JSONL_SOURCE)
            if (out := compile_kernel(root, source)) is not None]


class CompileKernel(BuildHookInterface):  # type: ignore[misc]
    """Hatchling's custom build hook (``[tool.hatch.build.targets.wheel.hooks.custom]``)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        built = compile_all(Path(self.root))
        if not built:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports them from src/
            for out in built:
                package = out.parent.name  # engine or formats
                build_data["force_include"][str(out)] = f"coverwatch/{package}/{out.name}"


if __name__ == "__main__":
    sys.exit(0 if len(compile_all(Path(__file__).resolve().parent)) == 2 else 1)
