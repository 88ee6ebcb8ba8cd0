"""``smokehouse device …``: provision thermometers (credentials, Mosquitto auth files, Home
Assistant discovery) from a shell.

Bad input (an existing id, an unknown device, a URL Apprise doesn't know) exits 2 and changes
nothing; a problem with Mosquitto's files exits 1. A password is shown once: only its hash is
kept (in Mosquitto's password file).
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from app.cli_support import command_settings, fail, friendly_errors
from app.config import Settings
from app.iot.provisioning_settings import ProvisioningSettings

device_cli = typer.Typer(
    name="device",
    help="Thermometers: add, list, remove, rotate credentials; Mosquitto auth files.",
    no_args_is_help=True,
)

PI_PASSWORD_FILE = "/etc/smokehouse-device/mqtt-password"
RELOAD_HINT = (
    "Mosquitto rereads its password and ACL files on SIGHUP: `docker compose kill -s HUP "
    "mosquitto`, `sudo systemctl reload mosquitto`, or set SMOKEHOUSE_IOT_MOSQUITTO_PID_FILE "
    "and smokehouse sends it."
)


def _settings() -> tuple[Settings, ProvisioningSettings]:
    from app.migrate import upgrade
    from app.preflight import check_database

    settings = command_settings()
    prov = settings.iot.provisioning
    check_database(settings)
    if settings.auto_migrate:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        upgrade(settings.sqlalchemy_url)
    return settings, prov


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    """The command's transaction, under the provisioning lock until after the commit; a
    :class:`DeviceError` rolls it back and exits 2."""
    from app.db import get_database
    from app.iot.devices import DeviceError, provisioning_lock

    try:
        with provisioning_lock(settings), get_database(settings.sqlalchemy_url).session() as s:
            yield s
    except DeviceError as exc:
        raise fail(str(exc), 2) from None


def _reload(prov: ProvisioningSettings) -> bool:
    """After the commit: SIGHUP Mosquitto if we know its pid, else say how. False on failure."""
    from app.iot.devices import reload_if_configured
    from app.iot.mosquitto import MosquittoFileError

    try:
        pid = reload_if_configured(prov)
    except MosquittoFileError as exc:
        typer.secho(f"smokehouse: warning: Mosquitto not reloaded: {exc}", err=True, fg="yellow")
        typer.echo(RELOAD_HINT, err=True)
        return False
    if pid is None:
        typer.echo(RELOAD_HINT, err=True)
    else:
        typer.echo(f"Mosquitto (pid {pid}) reloads its password and ACL files.", err=True)
    return True


def _close_mqtt() -> None:
    from app.bus.targets.mqtt import close_publishers

    close_publishers()


def _print_credentials(
    credentials: object, settings: Settings, prov: ProvisioningSettings, as_json: bool
) -> None:
    from app.iot.devices import Credentials, device_config

    assert isinstance(credentials, Credentials)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "device_id": credentials.device_id,
                    "username": credentials.username,
                    "password": credentials.password,
                    "mqtt_url": credentials.mqtt_url,
                    "config": device_config(credentials, PI_PASSWORD_FILE),
                }
            )
        )
        return
    files = f"{prov.password_file(settings)}, {prov.acl_file(settings)}"
    typer.echo(
        f"  MQTT username  {credentials.username}\n"
        f"  MQTT password  {credentials.password}   (shown once: only its hash is kept)\n"
        f"  Broker         {credentials.mqtt_url}\n"
        f"  Mosquitto      {files}\n"
        "\n"
        "Device config (/etc/smokehouse-device/config.toml on the Pi):\n\n"
        + _indent(device_config(credentials, PI_PASSWORD_FILE))
        + "\nThe password, on the Pi:\n\n"
        f"    printf '%s\\n' {shlex.quote(credentials.password)} | sudo install -m 0640 "
        f"-g smokehouse /dev/stdin {PI_PASSWORD_FILE}\n"
    )
    if prov.device_mqtt_url is None and settings.mqtt_url is None:
        typer.echo(
            "(The broker URL is the embedded one on this machine; a Pi needs this machine's "
            "address: set SMOKEHOUSE_IOT_DEVICE_MQTT_URL.)\n"
        )


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" if line else "\n" for line in text.splitlines())


def _warn_unusable(result: object) -> None:
    from app.iot.mosquitto import SyncResult

    assert isinstance(result, SyncResult)
    for device_id in result.without_password:
        typer.secho(
            f"smokehouse: warning: device {device_id!r} has no password in Mosquitto's password "
            f"file and can't connect: `smokehouse device rotate {device_id}` gives it one",
            err=True,
            fg="yellow",
        )


@device_cli.command("add")
@friendly_errors
def add(
    name: Annotated[str, typer.Argument(help="What you call it, e.g. 'Backyard Pi'.")],
    device_id: Annotated[
        str | None,
        typer.Option("--id", help="The device id (an MQTT topic level); default: from NAME."),
    ] = None,
    notify: Annotated[
        list[str] | None,
        typer.Option("--notify", help="An Apprise URL its alarms notify (repeatable)."),
    ] = None,
    home_assistant: Annotated[
        bool, typer.Option("--home-assistant", help="Announce its probes to Home Assistant.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a device with its own MQTT user (it may only publish under smokehouse/<id>/), write
    Mosquitto's password and ACL files, and print the device's config."""
    from app.iot.devices import add_device

    settings, prov = _settings()
    with _session(settings) as session:
        credentials = add_device(
            settings,
            session,
            name,
            device_id=device_id,
            notify_urls=notify or (),
            home_assistant=home_assistant,
            prov=prov,
        )
    if not as_json:
        typer.echo(f"Device {credentials.device_id!r} added.\n")
    _print_credentials(credentials, settings, prov, as_json)
    if not _reload(prov):
        raise typer.Exit(1)


@device_cli.command("list")
@friendly_errors
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Devices, their MQTT user, availability and last message."""
    from app.iot.devices import list_devices, probe_ids

    settings, _prov = _settings()
    with _session(settings) as session:
        rows: list[dict[str, Any]] = [
            {
                "id": d.id,
                "name": d.name,
                "mqtt_username": d.mqtt_username,
                "availability": d.availability,
                "last_seen_at": d.last_seen_at.isoformat() if d.last_seen_at else None,
                "home_assistant": d.home_assistant_discovery,
                "notify_urls": len(d.notify_urls or []),
                "probes": probe_ids(session, d.id),
            }
            for d in list_devices(session)
        ]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    if not rows:
        typer.echo("No devices yet: `smokehouse device add NAME`.")
        return
    typer.echo(f"{'ID':<24} {'NAME':<24} {'STATUS':<8} {'LAST SEEN':<26} HA  PROBES")
    for row in rows:
        typer.echo(
            f"{row['id']:<24} {row['name'][:24]:<24} {row['availability'] or '-':<8} "
            f"{row['last_seen_at'] or '-':<26} {'yes' if row['home_assistant'] else 'no ':<3} "
            f"{','.join(row['probes']) or '-'}"
        )


@device_cli.command("remove")
@friendly_errors
def remove(
    device_id: Annotated[str, typer.Argument(help="The device id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Don't ask.")] = False,
) -> None:
    """Delete a device with its probes, cooks, alarms and readings; its MQTT user goes from
    Mosquitto's files and its Home Assistant entities are withdrawn."""
    from app.iot.devices import get_device, remove_device
    from app.iot.discovery import DiscoveryError, withdraw

    settings, prov = _settings()
    if not yes:
        with _session(settings) as session:
            get_device(session, device_id)  # an unknown id fails before the question
        typer.confirm(f"Remove device {device_id!r} and all its readings?", abort=True, err=True)
    with _session(settings) as session:
        removed = remove_device(settings, session, device_id, prov=prov)
    typer.echo(f"Device {removed.device_id!r} removed.")
    reloaded = _reload(prov)
    if removed.home_assistant_discovery and removed.probe_ids:
        try:
            count = withdraw(settings, removed.device_id, removed.probe_ids, prov=prov)
            typer.echo(f"Withdrew {count} Home Assistant entities.")
        except DiscoveryError as exc:
            typer.secho(
                f"smokehouse: warning: Home Assistant entities not withdrawn: {exc}",
                err=True,
                fg="yellow",
            )
        finally:
            _close_mqtt()
    if not reloaded:
        raise typer.Exit(1)


@device_cli.command("rotate")
@friendly_errors
def rotate(
    device_id: Annotated[str, typer.Argument(help="The device id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A new MQTT password for the device (the old one stops working once Mosquitto reloads)."""
    from app.iot.devices import rotate_credentials

    settings, prov = _settings()
    with _session(settings) as session:
        credentials = rotate_credentials(settings, session, device_id, prov=prov)
    if not as_json:
        typer.echo(f"New password for {credentials.device_id!r}.\n")
    _print_credentials(credentials, settings, prov, as_json)
    if not _reload(prov):
        raise typer.Exit(1)


@device_cli.command("notify")
@friendly_errors
def notify(
    device_id: Annotated[str, typer.Argument(help="The device id.")],
    urls: Annotated[
        list[str] | None, typer.Argument(help="Apprise URLs; none: stop notifying.")
    ] = None,
) -> None:
    """Set the Apprise URLs (ntfy://…, tgram://…, mailto://…) the device's alarms notify."""
    from app.iot.devices import set_notify_urls

    settings, _prov = _settings()
    with _session(settings) as session:
        device = set_notify_urls(session, device_id, urls or [])
        count = len(device.notify_urls)
    typer.echo(f"Device {device_id!r} notifies {count} URL(s).")


@device_cli.command("home-assistant")
@friendly_errors
def home_assistant(
    device_id: Annotated[str, typer.Argument(help="The device id.")],
    state: Annotated[str, typer.Argument(help="on or off")],
) -> None:
    """Turn Home Assistant discovery on (announces every known probe now, and new ones as they
    appear) or off (withdraws them)."""
    from app.iot.devices import probe_ids, set_home_assistant
    from app.iot.discovery import DiscoveryError, announce_device, withdraw

    if state not in ("on", "off"):
        raise fail("STATE must be 'on' or 'off'", 2)
    settings, prov = _settings()
    try:
        with _session(settings) as session:
            set_home_assistant(session, device_id, state == "on")
            if state == "on":
                count = announce_device(settings, session, device_id, prov=prov)
            else:
                count = withdraw(settings, device_id, probe_ids(session, device_id), prov=prov)
    except DiscoveryError as exc:
        raise fail(f"nothing changed: {exc}", 1) from None
    finally:
        _close_mqtt()
    done = "announced to" if state == "on" else "withdrawn from"
    typer.echo(f"Home Assistant discovery {state} for {device_id!r}: {count} probe(s) {done} HA.")


@device_cli.command("sync")
@friendly_errors
def sync_files() -> None:
    """Rewrite Mosquitto's password and ACL files from the device table (and the server's user
    from SMOKEHOUSE_MQTT_URL), then reload Mosquitto."""
    from app.iot.devices import service_login, sync_auth_files

    settings, prov = _settings()
    with _session(settings) as session:
        result = sync_auth_files(settings, session, prov=prov)
    typer.echo(
        f"Wrote {prov.password_file(settings)} and {prov.acl_file(settings)}: "
        f"{len(result.users)} user(s)"
        + (f", dropped {', '.join(result.dropped)}" if result.dropped else "")
        + "."
    )
    if service_login(settings) is None:
        typer.secho(
            "smokehouse: warning: SMOKEHOUSE_MQTT_URL has no user and password, so the server "
            "has no MQTT user in these files: `smokehouse device service-credentials`",
            err=True,
            fg="yellow",
        )
    _warn_unusable(result)
    if not _reload(prov):
        raise typer.Exit(1)


@device_cli.command("service-credentials")
@friendly_errors
def service_credentials(
    username: Annotated[str, typer.Option(help="The server's MQTT username.")] = "smokehouse",
) -> None:
    """Make up a password for the server's own MQTT user (ingest, discovery, bus MQTT targets)
    and print the SMOKEHOUSE_MQTT_URL to set; `smokehouse device sync` then writes it."""
    from urllib.parse import urlsplit

    from app.iot.mosquitto import check_username, generate_password

    check_username(username)
    settings = command_settings()
    parts = urlsplit(settings.mqtt_url or "mqtt://127.0.0.1:1883")
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    password = generate_password()
    typer.echo(f"SMOKEHOUSE_MQTT_URL={parts.scheme}://{username}:{password}@{host}{port}")
    typer.echo(
        "Set it for every smokehouse process (compose: SMOKEHOUSE_MQTT_PASSWORD in .env), then "
        "run `smokehouse device sync`.",
        err=True,
    )


@device_cli.command("home-assistant-credentials")
@friendly_errors
def home_assistant_credentials() -> None:
    """A (new) password for Home Assistant's MQTT user (SMOKEHOUSE_IOT_HOME_ASSISTANT_USERNAME,
    default homeassistant): it may read the discovery configs and the devices' topics."""
    from app.iot.devices import home_assistant_credentials as make_credentials

    settings, prov = _settings()
    with _session(settings) as session:
        credentials = make_credentials(settings, session, prov=prov)
    typer.echo(
        f"  MQTT username  {credentials.username}\n"
        f"  MQTT password  {credentials.password}   (shown once: only its hash is kept)\n"
        f"  Broker         {credentials.mqtt_url}\n"
        "In Home Assistant: Settings → Devices & services → MQTT → configure the broker with "
        "these, discovery on (prefix homeassistant)."
    )
    if not _reload(prov):
        raise typer.Exit(1)
