"""Device commands: `devices add`, `devices enrol` (an enrolment link and QR code for
Traccar Client or OsmAnd) and `devices rotate`. The token is shown once: the server keeps
a hash."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from coverwatch.cli.options import DataDirOption, DbOption

__all__ = ["devices_app"]

devices_app = typer.Typer(help="Officers' tracking devices.", no_args_is_help=True)



@devices_app.command("add")
def devices_add(
    name: str,
    officer: Annotated[str, typer.Option(help="The officer this device reports for.")],
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Register a device and print its token (shown once: put it in the app)."""
    from coverwatch.cli.serving import device_token_note

    token = _create_device(name, officer, "created", db, data_dir)
    Console(stderr=True).print(device_token_note(name, officer), highlight=False, soft_wrap=True)
    print(token)


def _create_device(name: str, officer: str, action: str, db: str | None,
                   data_dir: Path) -> str:
    """Register a device, audited as ``action``; its token (exit 2 on a refusal)."""
    from coverwatch.errors import StoreError
    from coverwatch.storage import DuplicateNameError, open_store, record_device_change
    store = open_store(db, data_dir)
    try:
        _, token = store.create_device(name, officer)
        record_device_change(store, "cli", name, action, {"officer": officer})
    except DuplicateNameError as e:
        # The token is kept only as a hash: a device added before gets its link and QR code
        # with a new token, which `rotate` gives (and says the old one stops working).
        Console(stderr=True).print(
            f"[red]error[/red] {e}: `coverwatch devices rotate {name} --public-url URL --qr "
            "FILE` gives it a new token with its link and QR code (the old token stops "
            "working)", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (StoreError, ValueError) as e:
        Console(stderr=True).print(f"[red]error[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    return token


def _show_enrolment(name: str, officer: str | None, token: str, public_url: str | None,
                    qr: Path | None, interval_s: int) -> None:
    from coverwatch.server.enrolment import enrolment, write_qr

    console = Console()
    if public_url is None:
        print(token)
        Console(stderr=True).print("no --public-url: no enrolment link or QR code")
        return
    try:
        e = enrolment(public_url, name, officer, token, interval_s=interval_s)
    except ValueError as exc:
        Console(stderr=True).print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"device {name} for officer {officer} (shown once: the server keeps a hash)",
                  highlight=False)
    console.print(f"server URL:        {e.server_url}", highlight=False, soft_wrap=True)
    console.print(f"device identifier: {e.token}", highlight=False, soft_wrap=True)
    console.print(f"Traccar Client link (scan the QR code in the app): {e.traccar_link}",
                  highlight=False, soft_wrap=True)
    console.print(f"OsmAnd online tracking URL: {e.osmand_url}", highlight=False, soft_wrap=True)
    if qr is not None:
        write_qr(e.traccar_link, qr)
        console.print(f"QR code written to {qr}", highlight=False)
    else:
        import segno

        segno.make(e.traccar_link, error="m").terminal(compact=True)


PublicUrl = Annotated[str | None, typer.Option(
    help="How phones reach the server, e.g. https://cover.example.org (for the link and QR).")]
QrFile = Annotated[Path | None, typer.Option("--qr", help="Write the QR code here (.svg, .png).")]
Interval = Annotated[int, typer.Option(help="Traccar Client reporting interval (s).")]


@devices_app.command("enrol")
def devices_enrol(
    name: str,
    officer: Annotated[str, typer.Option(help="The officer this device reports for.")],
    public_url: PublicUrl = None,
    qr: QrFile = None,
    interval: Interval = 5,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Register a device and print the link and QR code that configure Traccar Client."""
    token = _create_device(name, officer, "enrolled", db, data_dir)
    _show_enrolment(name, officer, token, public_url, qr, interval)


@devices_app.command("rotate")
def devices_rotate(
    name: str,
    public_url: PublicUrl = None,
    qr: QrFile = None,
    interval: Interval = 5,
    db: DbOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Give a device a new token (the old one stops working) and print its new link and QR."""
    from coverwatch.errors import StoreError
    from coverwatch.storage import open_store, record_device_change

    store = open_store(db, data_dir)
    try:
        token = store.rotate_device_token(name)
        device = next((d for d in store.list_devices() if d.name == name), None)
        record_device_change(store, "cli", name, "rotated")
    except (StoreError, ValueError, LookupError) as e:
        Console(stderr=True).print(f"[red]error[/red] {e}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        store.close()
    _show_enrolment(name, None if device is None else device.officer, token, public_url, qr,
                    interval)
