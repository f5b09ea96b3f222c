"""`coverwatch mqtt acl`: the MQTT broker's password file and ACL for a deployment.

One broker serves every site of a deployment, so the command takes every site
file (as ``serve`` does) and writes both files for all of them at once; see
:mod:`coverwatch.server.mqttacl` for what they hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from coverwatch.cli.options import DataDirOption, DbOption
from coverwatch.errors import SiteFileError

__all__ = ["mqtt_acl", "mqtt_app"]

mqtt_app = typer.Typer(help="The MQTT broker's credentials for devices.", no_args_is_help=True)



@mqtt_app.command("acl")
def mqtt_acl(
    site: Annotated[list[Path], typer.Option(
        "--site", help="A site file (YAML); repeat for each site of the deployment.")],
    passwd: Annotated[Path, typer.Option(help="Mosquitto password file to write.")],
    acl: Annotated[Path, typer.Option(help="Mosquitto ACL file to write.")],
    rotate: Annotated[list[str] | None, typer.Option(
        help="Mint a new password for this device (repeatable).")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Write one Mosquitto password file and ACL for every site of the deployment:
    each device may publish only to coverwatch/<its site>/devices/<device>/events.
    New passwords are printed once."""
    from coverwatch.formats.sitefile import load_site
    from coverwatch.server.mqttacl import write_acl
    from coverwatch.storage import open_store
    from coverwatch.storage.sites import key_for_site

    err = Console(stderr=True)
    try:
        ids = [load_site(path).id for path in site]
    except SiteFileError as e:
        for problem in e.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False)
        raise typer.Exit(2) from None
    store = open_store(db, data_dir)
    try:
        # The store key of each site, decided as `serve` decides it for the same files.
        by_key = {key_for_site(store, i, sole=len(ids) == 1, first=n == 0): i
                  for n, i in enumerate(ids)}
        devices = [d for d in store.list_devices() if d.active and d.officer]
    finally:
        store.close()
    elsewhere = sorted({d.site for d in devices} - set(by_key))
    if elsewhere:
        # Leaving them out would take their devices' access away without a word.
        err.print(f"[red]error[/red] the store has devices of other sites ({', '.join(elsewhere)})"
                  ": give every site of the deployment, --site once per site (as for `serve`)",
                  highlight=False)
        raise typer.Exit(2)
    sites = {i: [d.name for d in devices if by_key.get(d.site) == i] for i in ids}
    try:
        written = write_acl(sites, passwd, acl, rotate=rotate or ())
    except ValueError as e:
        err.print(f"[red]error[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    console = Console()
    console.print(f"wrote {passwd} ({len(written.users)} users) and {acl} for "
                  f"{len(ids)} site(s): {', '.join(ids)}", highlight=False)
    for user, password in written.minted.items():
        print(f"{user}: {password}")
    if written.minted:
        console.print("passwords above are shown once; Mosquitto keeps only their hashes.")
    console.print(f"mosquitto.conf: password_file {passwd.resolve()} / acl_file {acl.resolve()} "
                  "/ allow_anonymous false", highlight=False)
