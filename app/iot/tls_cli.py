"""``smokehouse tls …``: the certificates for Mosquitto's TLS listener (see :mod:`app.iot.tls`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli_support import command_settings, fail, friendly_errors

tls_cli = typer.Typer(
    name="tls",
    help="Certificates for Mosquitto's TLS listener (a private CA the devices trust).",
    no_args_is_help=True,
)


@tls_cli.command("init")
@friendly_errors
def init(
    host: Annotated[
        list[str],
        typer.Option(
            "--host",
            help="A DNS name or IP address clients connect to (repeatable; the first is the CN).",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Where the files go; default: <data dir>/tls."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Replace an existing CA (every device must then get the new ca.crt)."),
    ] = False,
    days: Annotated[
        int, typer.Option(min=1, max=3650, help="The server certificate's lifetime.")
    ] = 825,
) -> None:
    """Create a CA (ca.key 0600, ca.crt 0644) and a server certificate signed by it (server.key
    0600, server.crt 0644) naming every --host. Rerun to add a host or renew: an existing CA is
    kept unless --force."""
    from app.iot.tls import TlsError
    from app.iot.tls import init as tls_init

    directory = out if out is not None else command_settings().data_dir / "tls"
    try:
        result = tls_init(directory, host, force=force, days=days)
    except TlsError as exc:
        raise fail(str(exc), 2) from None
    except OSError as exc:
        raise fail(f"can't write {directory}: {exc}", 1) from None
    ca = "created" if result.ca_created else "kept (existing; --force replaces it)"
    server = "issued" if result.server_issued else "kept (same hosts, not near expiry)"
    where = result.directory
    typer.echo(
        f"  CA                  {where / 'ca.crt'}   {ca}\n"
        f"  Server certificate  {where / 'server.crt'}   {server}\n"
        f"  Hosts               {', '.join(result.hosts)}\n"
        "\n"
        "Mosquitto (a TLS listener; compose mounts deploy/mosquitto/tls.conf):\n\n"
        "    listener 8883\n"
        f"    cafile {where / 'ca.crt'}\n"
        f"    certfile {where / 'server.crt'}\n"
        f"    keyfile {where / 'server.key'}\n"
        "    tls_version tlsv1.2\n"
        "\n"
        "On each Pi: copy ca.crt to /etc/smokehouse-device/ca.crt and in its config.toml set\n"
        f'  [mqtt] url = "mqtts://{result.hosts[0]}:8883"  and  ca_file = '
        '"/etc/smokehouse-device/ca.crt"\n'
        + ("\nRestart Mosquitto to load the new certificate.\n" if result.server_issued else "")
    )
