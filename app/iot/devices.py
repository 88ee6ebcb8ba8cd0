"""Device provisioning: the device row, its MQTT credentials and Mosquitto's auth files.

Every change to who may connect goes through here and ends with the password/ACL files rewritten
from the device table (:func:`app.iot.mosquitto.sync`), inside the caller's transaction: if the
files can't be written the row isn't committed either. Mosquitto rereads the files on SIGHUP
(:func:`reload_if_configured`, after the commit). Like every service it never commits.

The server's own MQTT user is the one in ``SMOKEHOUSE_MQTT_URL`` (``mqtt://user:password@…``):
every sync writes it to the password file with the server's ACL, so the secret lives in one
place, the environment, and ``smokehouse device service-credentials`` makes one up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.iot.models import Device, IngestedMessage, Probe, Reading
from app.iot.mosquitto import (
    AuthFiles,
    DeviceLogin,
    MosquittoFileError,
    SyncResult,
    check_topic_filter,
    generate_password,
    home_assistant_acl,
    locked,
    reload_mosquitto,
    sync,
)
from app.iot.provisioning_settings import ProvisioningSettings

#: The device's own rule (device/ config): a single MQTT topic level.
log = logging.getLogger("smokehouse.iot.devices")

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class DeviceError(ValueError):
    """Bad input for a device command: nothing was changed."""


class DeviceExists(DeviceError):
    pass


class DeviceNotFound(DeviceError):
    pass


@dataclass(frozen=True, slots=True)
class Credentials:
    device_id: str
    username: str
    password: str
    #: The broker URL the device should use (no credentials in it).
    mqtt_url: str


def slugify(name: str) -> str:
    """``"Backyard Pi #2"`` → ``"backyard-pi-2"``: ASCII, lower case, a valid device id."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_.]+", "-", ascii_name.lower()).strip("-._")
    return slug[:64].rstrip("-._")


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.match(device_id):
        raise DeviceError(
            f"{device_id!r} is not a valid device id: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 64 characters)"
        )
    return device_id


def _apprise() -> Any:
    """The apprise module, imported quietly (its plugins import the deprecated imghdr)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

    return apprise


def check_notify_url(url: str) -> str:
    """Apprise must understand it (``ntfy://…``, ``tgram://…``, ``mailto://…``, ``json://…``)."""
    apprise_log = logging.getLogger("apprise")
    level = apprise_log.level
    apprise_log.setLevel(logging.CRITICAL)  # our error says it, once
    try:
        known = bool(url.strip()) and _apprise().Apprise().add(url.strip())
    finally:
        apprise_log.setLevel(level)
    if not known:
        raise DeviceError(
            f"{url!r} is not a notification URL Apprise understands "
            "(e.g. ntfy://topic, tgram://bottoken/chatid, mailto://user:pass@host)"
        )
    return url.strip()


# --- queries ------------------------------------------------------------------------------------


def get_device(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise DeviceNotFound(f"no device {device_id!r} (see `smokehouse device list`)")
    return device


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.id)))


def probe_ids(session: Session, device_id: str) -> list[str]:
    query = select(Probe.probe_id).where(Probe.device_id == device_id).order_by(Probe.probe_id)
    return list(session.scalars(query))


# --- Mosquitto's files --------------------------------------------------------------------------


def auth_files(settings: Settings, prov: ProvisioningSettings) -> AuthFiles:
    return AuthFiles(
        password_file=prov.password_file(settings),
        acl_file=prov.acl_file(settings),
        mode=prov.file_mode,
        discovery_prefix=prov.discovery_prefix,
        extra_service_write=tuple(prov.extra_service_write_topics),
    )


def service_login(settings: Settings) -> tuple[str, str] | None:
    """The server's MQTT username and password, from ``SMOKEHOUSE_MQTT_URL``."""
    if not settings.mqtt_url:
        return None
    parts = urlsplit(settings.mqtt_url)
    if not parts.username or not parts.password:
        return None
    return unquote(parts.username), unquote(parts.password)


def mqtt_target_topics(session: Session) -> list[str]:
    """The topics the bus's ``arn:smokehouse:mqtt:…`` targets publish to: the server's user may
    write them (a target added later is refused, 0x87, until the next ``smokehouse device sync``).
    A topic Mosquitto's ACL file can't hold is left out (its deliveries fail ``MqttRefused``)."""
    from app.bus.models import Target
    from app.bus.targets.mqtt import PREFIX

    topics = []
    for arn in session.scalars(select(Target.arn).where(Target.arn.startswith(PREFIX))):
        topic = arn.removeprefix(PREFIX)
        try:
            topics.append(check_topic_filter(topic))
        except MosquittoFileError:
            log.warning("MQTT target topic %r can't go into Mosquitto's ACL file", topic)
    return sorted(set(topics))


def sync_auth_files(
    settings: Settings,
    session: Session,
    *,
    new_passwords: dict[str, str] | None = None,
    prov: ProvisioningSettings | None = None,
) -> SyncResult:
    """Rewrite the password and ACL files for the devices in this session's view of the table."""
    prov = prov or settings.iot.provisioning
    session.flush()
    logins = [DeviceLogin(device_id=d.id, username=d.mqtt_username) for d in list_devices(session)]
    files = auth_files(settings, prov)
    files = dataclasses.replace(
        files,
        extra_service_write=(*files.extra_service_write, *mqtt_target_topics(session)),
    )
    try:
        return sync(
            files,
            logins,
            service=service_login(settings),
            others=[home_assistant_acl(prov.home_assistant_username, prov.discovery_prefix)],
            new_passwords=new_passwords,
        )
    except OSError as exc:
        raise MosquittoFileError(f"can't write Mosquitto's auth files: {exc}") from None


def provisioning_lock(
    settings: Settings, prov: ProvisioningSettings | None = None
) -> contextlib.AbstractContextManager[None]:
    """Hold it around the whole transaction (read the devices, write the files, commit): two
    provisioning commands at once then never drop each other's user from the files."""
    prov = prov or settings.iot.provisioning
    return locked(prov.password_file(settings))


def reload_if_configured(prov: ProvisioningSettings) -> int | None:
    """SIGHUP Mosquitto when ``SMOKEHOUSE_IOT_MOSQUITTO_PID_FILE`` is set; the pid, else None."""
    if prov.mosquitto_pid_file is None:
        return None
    return reload_mosquitto(prov.mosquitto_pid_file)


def device_mqtt_url(settings: Settings, prov: ProvisioningSettings) -> str:
    """The URL to give devices: the configured one, else the server's without its credentials."""
    if prov.device_mqtt_url:
        return prov.device_mqtt_url
    parts = urlsplit(settings.effective_mqtt_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    scheme = "mqtts" if parts.scheme in ("mqtts", "ssl") else "mqtt"
    return urlunsplit((scheme, netloc, "", "", ""))


# --- commands -----------------------------------------------------------------------------------


def add_device(
    settings: Settings,
    session: Session,
    name: str,
    *,
    device_id: str | None = None,
    notify_urls: Sequence[str] = (),
    home_assistant: bool = False,
    prov: ProvisioningSettings | None = None,
) -> Credentials:
    """Create the device with a fresh password and write it into Mosquitto's files."""
    prov = prov or settings.iot.provisioning
    name = " ".join(name.split())
    if not name:
        raise DeviceError("a device needs a name")
    if len(name) > 200:
        raise DeviceError("a device name is at most 200 characters")
    device_id = check_device_id(device_id if device_id is not None else slugify(name))
    urls = [check_notify_url(u) for u in notify_urls]
    if session.get(Device, device_id) is not None:
        raise DeviceExists(f"device {device_id!r} already exists (choose another --id)")
    service = service_login(settings)
    if device_id in (service[0] if service else None, prov.home_assistant_username):
        raise DeviceError(f"{device_id!r} is a reserved MQTT username; choose another --id")
    taken = session.scalar(select(Device.id).where(Device.mqtt_username == device_id))
    if taken is not None:
        raise DeviceExists(f"MQTT username {device_id!r} is already device {taken!r}'s")
    session.add(
        Device(
            id=device_id,
            name=name,
            mqtt_username=device_id,
            notify_urls=urls,
            home_assistant_discovery=home_assistant,
            created_at=utcnow(),
        )
    )
    password = generate_password()
    sync_auth_files(settings, session, new_passwords={device_id: password}, prov=prov)
    return Credentials(device_id, device_id, password, device_mqtt_url(settings, prov))


def home_assistant_credentials(
    settings: Settings, session: Session, *, prov: ProvisioningSettings | None = None
) -> Credentials:
    """A (new) password for Home Assistant's own MQTT user."""
    prov = prov or settings.iot.provisioning
    username = prov.home_assistant_username
    if session.scalar(select(Device.id).where(Device.mqtt_username == username)) is not None:
        raise DeviceError(f"{username!r} is a device's MQTT username")
    password = generate_password()
    sync_auth_files(settings, session, new_passwords={username: password}, prov=prov)
    return Credentials("", username, password, device_mqtt_url(settings, prov))


def rotate_credentials(
    settings: Settings,
    session: Session,
    device_id: str,
    *,
    prov: ProvisioningSettings | None = None,
) -> Credentials:
    """A new password for the device; the old one stops working when Mosquitto reloads."""
    prov = prov or settings.iot.provisioning
    device = get_device(session, device_id)
    password = generate_password()
    sync_auth_files(settings, session, new_passwords={device.mqtt_username: password}, prov=prov)
    return Credentials(device.id, device.mqtt_username, password, device_mqtt_url(settings, prov))


@dataclass(frozen=True, slots=True)
class Removed:
    device_id: str
    name: str
    probe_ids: list[str]
    home_assistant_discovery: bool


def remove_device(
    settings: Settings,
    session: Session,
    device_id: str,
    *,
    prov: ProvisioningSettings | None = None,
) -> Removed:
    """Delete the device with its probes, cooks, alarms, readings and ingest dedupe (so the same
    id can be added again and start at seq 1), and take it out of Mosquitto's files."""
    device = get_device(session, device_id)
    removed = Removed(
        device.id, device.name, probe_ids(session, device.id), device.home_assistant_discovery
    )
    session.execute(delete(Reading).where(Reading.device_id == device.id))
    session.execute(delete(IngestedMessage).where(IngestedMessage.device_id == device.id))
    session.delete(device)
    sync_auth_files(settings, session, prov=prov)
    return removed


def set_notify_urls(session: Session, device_id: str, urls: Sequence[str]) -> Device:
    device = get_device(session, device_id)
    device.notify_urls = [check_notify_url(u) for u in urls]
    return device


#: How many notification URLs one device may have (each alarm is sent to every one).
MAX_NOTIFY_URLS = 20


def notify_target_id(url: str) -> str:
    """A stable handle for one of a device's URLs that does not reveal it (the dashboard
    removes and tests a URL by this, never seeing the URL again after adding it)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def notify_display(url: str) -> str:
    """The URL as Apprise shows it in privacy mode (tokens and passwords masked)."""
    plugin = _apprise().Apprise.instantiate(url)
    if plugin is None:
        return url.split("://", 1)[0] + "://…"
    return str(plugin.url(privacy=True))


def add_notify_url(session: Session, device_id: str, url: str) -> Device:
    """Add one Apprise URL (the CLI's validation); adding one it has already changes nothing."""
    device = get_device(session, device_id)
    checked = check_notify_url(url)
    current = list(device.notify_urls or [])
    if checked not in current:
        if len(current) >= MAX_NOTIFY_URLS:
            raise DeviceError(f"a device notifies at most {MAX_NOTIFY_URLS} URLs")
        device.notify_urls = [*current, checked]
    return device


def remove_notify_url(session: Session, device_id: str, target_id: str) -> Device:
    device = get_device(session, device_id)
    current = list(device.notify_urls or [])
    kept = [u for u in current if notify_target_id(u) != target_id]
    if len(kept) == len(current):
        raise DeviceError(f"device {device_id} has no notification target {target_id!r}")
    device.notify_urls = kept
    return device


def set_home_assistant(session: Session, device_id: str, enabled: bool) -> Device:
    device = get_device(session, device_id)
    device.home_assistant_discovery = enabled
    return device


def device_config(credentials: Credentials, password_file: str | None = None) -> str:
    """The ``[mqtt]`` part of the device's config file (device/config.example.toml), ready to
    paste; with ``password_file`` the password goes in that file instead of the config."""
    secret = (
        f'password_file = "{password_file}"'
        if password_file
        else f'password = "{credentials.password}"'
    )
    ca = (
        '\n# ca_file = "/etc/smokehouse-device/ca.crt"   # a private CA; default: system CAs'
        if credentials.mqtt_url.startswith("mqtts://")
        else ""
    )
    return (
        f'device_id = "{credentials.device_id}"\n'
        "sample_interval_s = 5.0\n"
        "# simulator = true        # no probes wired yet? publish a simulated cook\n"
        "\n"
        "[mqtt]\n"
        f'url = "{credentials.mqtt_url}"\n'
        f'username = "{credentials.username}"\n'
        f"{secret}{ca}\n"
        "\n"
        "# [[probes]] …  see device/config.example.toml\n"
    )
