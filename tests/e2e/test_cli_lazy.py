"""The CLI's sub-commands load lazily (cli/lazygroup.py): a start imports only the
invoked command's module, and each command loaded alone is the same as with all loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__: list[str] = []

# Prints the command tree (names, recursively) reached from the names in argv, in a
# fresh process: only those commands' modules are loaded.
_TREE = """
import json, sys
from typer.main import get_command
from coverwatch.cli import app
root = get_command(app)
def tree(cmd):
    if not hasattr(cmd, "list_commands"):
        return sorted(p.name for p in cmd.params)
    return {n: tree(cmd.get_command(None, n)) for n in cmd.list_commands(None)}
names = sys.argv[1:] or root.list_commands(None)
print(json.dumps({n: tree(root.get_command(None, n)) for n in names}))
"""


def _tree(*names: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _TREE, *names], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def test_each_command_loaded_alone_is_the_same_as_with_every_command_loaded() -> None:
    from coverwatch.cli.lazygroup import LAZY_COMMANDS, load_commands

    whole = _tree()
    assert set(whole) == {"help", "check", "replay", *LAZY_COMMANDS}
    # Every name a mount puts on the CLI is listed, under that mount.
    for mount in set(LAZY_COMMANDS.values()):
        names = set(load_commands(mount))
        assert names == {n for n, m in LAZY_COMMANDS.items() if m is mount}
        first = sorted(names)[0]
        # Alone in a process: a command whose subcommands another module adds (audit's,
        # site's) must still have them all.
        alone = _tree(first)
        assert alone[first] == whole[first], first
    assert {"verify", "anchor", "head", "keys"} <= set(whole["audit"])
    assert {"apply", "import-geojson", "export-geojson"} <= set(whole["site"])


def test_replay_imports_no_other_commands_module() -> None:
    code = ("import sys\nfrom coverwatch.cli import main\nsys.argv = ['coverwatch', 'replay', "
            "'--help']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('coverwatch.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()[-1]
    loaded = set(json.loads(out.replace("'", '"')))
    assert loaded <= {"coverwatch.cli.interop", "coverwatch.cli.lazygroup",
                      "coverwatch.cli.lightparams", "coverwatch.cli.options"}, loaded
