"""Mosquitto's password and ACL files as smokehouse writes them (app/iot/mosquitto.py).

The hash format is checked against a line ``mosquitto_passwd`` 2.0 wrote, and against the binary
itself when it is installed; the real broker reading these files is tests/integration/iot/
test_provisioning.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.iot.mosquitto import (
    AclUser,
    AuthFiles,
    DeviceLogin,
    MosquittoFileError,
    check_topic_filter,
    check_username,
    generate_password,
    hash_password,
    home_assistant_acl,
    locked,
    parse_password_file,
    render_acl,
    render_password_file,
    sync,
    verify_password,
    write_atomically,
)
from tests.services import unavailable

#: Written by ``mosquitto_passwd -c -b passwd alice s3cret`` (Mosquitto 2.0.11).
MOSQUITTO_LINE = (
    "alice:$7$101$pX3YvZ0boCi9+iDi$iPETigiBVCgY10fKJqfMeztiC1ECWiWgX7H73v90w578sD2c1PrAQCB6"
    "pzroZfph879wJVGfd1OnQGEFWDgzwQ=="
)

usernames = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
passwords = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)


# --- hashes -------------------------------------------------------------------------------------


def test_hash_is_byte_for_byte_what_mosquitto_passwd_writes() -> None:
    username, encoded = MOSQUITTO_LINE.split(":", 1)
    salt = base64.b64decode(encoded.split("$")[3])
    assert f"{username}:{hash_password('s3cret', salt=salt)}" == MOSQUITTO_LINE
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)


def test_hash_has_mosquittos_shape() -> None:
    _, seven, iterations, salt, key = hash_password("pw").split("$")
    assert (seven, iterations) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12
    assert len(base64.b64decode(key)) == 64


def test_salts_differ() -> None:
    assert hash_password("same") != hash_password("same")


def test_we_verify_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    if not shutil.which("mosquitto_passwd"):
        unavailable("mosquitto_passwd")
    password = generate_password()
    file = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(file), "bob", password], check=True)
    entries = parse_password_file(file.read_text())
    assert verify_password(password, entries["bob"])
    assert not verify_password(password + "x", entries["bob"])


@settings(max_examples=25, deadline=None)
@given(passwords, passwords)
def test_verify_accepts_only_the_password(password: str, other: str) -> None:
    encoded = hash_password(password)
    assert verify_password(password, encoded)
    assert verify_password(other, encoded) == (other == password)


def test_verify_reads_mosquitto_1_sha512_hashes() -> None:
    salt = b"0123456789ab"
    digest = hashlib.sha512(b"old-pw" + salt).digest()
    encoded = f"$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("old-pw", encoded)
    assert not verify_password("new-pw", encoded)


@pytest.mark.parametrize(
    "encoded", ["", "$7$", "$7$x$abc$def", "$7$0$AAAA$AAAA", "$7$101$!!$??", "$9$1$a$b", "plain"]
)
def test_verify_refuses_garbage_without_raising(encoded: str) -> None:
    assert not verify_password("pw", encoded)


def test_empty_password_is_refused() -> None:
    with pytest.raises(MosquittoFileError):
        hash_password("")


def test_generated_passwords_are_long_url_safe_and_unique() -> None:
    made = {generate_password() for _ in range(200)}
    assert len(made) == 200
    assert all(len(p) == 32 and p.replace("-", "").replace("_", "").isalnum() for p in made)


# --- password file ------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(usernames, st.sampled_from([MOSQUITTO_LINE.split(":", 1)[1]]), max_size=8))
def test_password_file_round_trips(entries: dict[str, str]) -> None:
    text = render_password_file(entries)
    assert parse_password_file(text) == entries
    assert text == "".join(f"{u}:{entries[u]}\n" for u in sorted(entries))


@pytest.mark.parametrize("text", ["alice\n", ":$7$x\n", "alice:plain\n", "a:$7$1\nbroken\n"])
def test_a_broken_password_file_is_an_error_naming_the_line(text: str) -> None:
    with pytest.raises(MosquittoFileError, match="line"):
        parse_password_file(text)


def test_blank_lines_are_skipped() -> None:
    assert parse_password_file("\n" + MOSQUITTO_LINE + "\n\n") == {
        "alice": MOSQUITTO_LINE.split(":", 1)[1]
    }


# --- names and topics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username", ["", "a:b", "a b", "a\nb", "-lead", ".dot", "x" * 129, "ü", "a/b", "a#", "a+"]
)
def test_usernames_that_would_break_the_files_are_refused(username: str) -> None:
    with pytest.raises(MosquittoFileError):
        check_username(username)


@given(usernames)
def test_valid_usernames_pass(username: str) -> None:
    assert check_username(username) == username


@pytest.mark.parametrize("topic", ["", " a", "a\nb", "a/#/b", "a/b#", "a+/b", "a\x00", "a/\rb"])
def test_bad_topic_filters_are_refused(topic: str) -> None:
    with pytest.raises(MosquittoFileError):
        check_topic_filter(topic)


@pytest.mark.parametrize("topic", ["#", "+", "a/+/b", "a/b/#", "smokehouse/x.y-z/#"])
def test_good_topic_filters_pass(topic: str) -> None:
    assert check_topic_filter(topic) == topic


# --- ACL ----------------------------------------------------------------------------------------


def test_acl_gives_each_user_its_own_block() -> None:
    text = render_acl(
        [
            AclUser("pit-b", readwrite=("smokehouse/pit-b/#",)),
            AclUser("server", read=("smokehouse/+/telemetry",), write=("homeassistant/#",)),
            AclUser("pit-a", readwrite=("smokehouse/pit-a/#",)),
        ]
    )
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "user pit-a",
        "topic readwrite smokehouse/pit-a/#",
        "user pit-b",
        "topic readwrite smokehouse/pit-b/#",
        "user server",
        "topic read smokehouse/+/telemetry",
        "topic write homeassistant/#",
    ]


def test_no_topic_line_comes_before_the_first_user() -> None:
    """Mosquitto applies topic lines before any ``user`` line to anonymous clients."""
    text = render_acl([AclUser("a", read=("x",))])
    first_topic = text.index("topic ")
    assert text.index("user a") < first_topic


def test_home_assistant_reads_discovery_and_device_topics() -> None:
    user = home_assistant_acl("ha")
    assert user.readwrite == ("homeassistant/#",)
    assert set(user.read) == {"smokehouse/+/telemetry", "smokehouse/+/status"}


# --- sync ---------------------------------------------------------------------------------------


def files(tmp_path: Path) -> AuthFiles:
    return AuthFiles(tmp_path / "auth" / "passwd", tmp_path / "auth" / "acl", mode=0o640)


def read(auth: AuthFiles) -> tuple[dict[str, str], str]:
    return parse_password_file(auth.password_file.read_text()), auth.acl_file.read_text()


def test_sync_writes_new_users_and_keeps_existing_hashes(tmp_path: Path) -> None:
    auth = files(tmp_path)
    a = DeviceLogin("pit-a", "pit-a")
    sync(auth, [a], new_passwords={"pit-a": "pa"})
    first, _ = read(auth)
    b = DeviceLogin("pit-b", "pit-b")
    result = sync(auth, [a, b], new_passwords={"pit-b": "pb"})
    second, acl = read(auth)
    assert result.users == ["pit-a", "pit-b"]
    assert second["pit-a"] == first["pit-a"]
    assert verify_password("pb", second["pit-b"])
    block = "user pit-b\ntopic write smokehouse/pit-b/telemetry\n"
    assert block + "topic readwrite smokehouse/pit-b/status" in acl


def test_sync_drops_users_that_are_no_longer_devices(tmp_path: Path) -> None:
    auth = files(tmp_path)
    a, b = DeviceLogin("a", "a"), DeviceLogin("b", "b")
    sync(auth, [a, b], new_passwords={"a": "1", "b": "2"})
    result = sync(auth, [a])
    entries, acl = read(auth)
    assert set(entries) == {"a"}
    assert result.dropped == ["b"]
    assert "user b" not in acl


def test_a_device_with_no_hash_on_file_is_reported_and_left_out(tmp_path: Path) -> None:
    auth = files(tmp_path)
    result = sync(auth, [DeviceLogin("lost", "lost")])
    entries, acl = read(auth)
    assert result.without_password == ["lost"]
    assert entries == {}
    assert "user lost" not in acl


def test_rotation_replaces_the_hash(tmp_path: Path) -> None:
    auth = files(tmp_path)
    a = DeviceLogin("a", "a")
    sync(auth, [a], new_passwords={"a": "old"})
    sync(auth, [a], new_passwords={"a": "new"})
    entries, _ = read(auth)
    assert verify_password("new", entries["a"])
    assert not verify_password("old", entries["a"])


def test_service_user_hash_is_kept_while_its_password_is_unchanged(tmp_path: Path) -> None:
    auth = files(tmp_path)
    sync(auth, [], service=("server", "s1"))
    first, acl = read(auth)
    sync(auth, [], service=("server", "s1"))
    assert read(auth)[0] == first
    sync(auth, [], service=("server", "s2"))
    assert verify_password("s2", read(auth)[0]["server"])
    assert "topic read smokehouse/+/status" in acl
    assert "topic write homeassistant/sensor/+/config" in acl


def test_other_users_exist_only_once_they_have_a_password(tmp_path: Path) -> None:
    auth = files(tmp_path)
    ha = home_assistant_acl("homeassistant")
    sync(auth, [], others=[ha])
    assert read(auth)[0] == {}
    sync(auth, [], others=[ha], new_passwords={"homeassistant": "h"})
    sync(auth, [], others=[ha])
    entries, acl = read(auth)
    assert verify_password("h", entries["homeassistant"])
    assert "user homeassistant" in acl


@pytest.mark.parametrize(
    ("devices", "service", "others"),
    [
        ([DeviceLogin("a", "x"), DeviceLogin("b", "x")], None, []),
        ([DeviceLogin("a", "server")], ("server", "pw"), []),
        ([DeviceLogin("a", "ha")], None, [AclUser("ha")]),
        ([DeviceLogin("a", "bad name")], None, []),
    ],
)
def test_clashing_or_bad_usernames_change_nothing(
    tmp_path: Path,
    devices: list[DeviceLogin],
    service: tuple[str, str] | None,
    others: list[AclUser],
) -> None:
    auth = files(tmp_path)
    sync(auth, [DeviceLogin("keep", "keep")], new_passwords={"keep": "k"})
    before = (auth.password_file.read_bytes(), auth.acl_file.read_bytes())
    with pytest.raises(MosquittoFileError):
        sync(auth, devices, service=service, others=others, new_passwords={"a": "1"})
    assert (auth.password_file.read_bytes(), auth.acl_file.read_bytes()) == before


def test_a_corrupt_password_file_is_not_overwritten(tmp_path: Path) -> None:
    auth = files(tmp_path)
    auth.password_file.parent.mkdir()
    auth.password_file.write_text("somebody edited this\n")
    with pytest.raises(MosquittoFileError, match="line 1"):
        sync(auth, [DeviceLogin("a", "a")], new_passwords={"a": "1"})
    assert auth.password_file.read_text() == "somebody edited this\n"


def test_files_get_the_configured_mode(tmp_path: Path) -> None:
    auth = AuthFiles(tmp_path / "passwd", tmp_path / "acl", mode=0o600)
    sync(auth, [DeviceLogin("a", "a")], new_passwords={"a": "1"})
    for path in (auth.password_file, auth.acl_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_atomically_leaves_no_temp_files_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomically(target, "one", 0o644)
    inode = target.stat().st_ino
    write_atomically(target, "two", 0o644)
    assert target.read_text() == "two"
    assert target.stat().st_ino != inode  # a new file renamed over, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_concurrent_provisioning_under_the_lock_loses_no_user(tmp_path: Path) -> None:
    """Eight `device add` at once, each holding the lock from reading the device list (here
    ``added``) to writing the files, as the CLI does: every user ends up in the file."""
    auth = files(tmp_path)
    names = [f"dev-{i}" for i in range(8)]
    barrier = threading.Barrier(len(names))
    added: list[str] = []

    def add(name: str) -> None:
        barrier.wait()
        with locked(auth.password_file):
            added.append(name)
            sync(auth, [DeviceLogin(n, n) for n in added], new_passwords={name: name})

    threads = [threading.Thread(target=add, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries, _ = read(auth)
    assert sorted(entries) == names
    assert all(verify_password(n, entries[n]) for n in names)


def test_the_lock_is_reentrant_and_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    order: list[str] = []
    with locked(path), locked(path):  # sync() inside a caller's lock must not deadlock

        def second() -> None:
            with locked(path):
                order.append("b")

        other = threading.Thread(target=second)
        other.start()
        other.join(0.3)
        order.append("a")
    other.join(5)
    assert order == ["a", "b"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_an_unreadable_password_file_is_a_clear_error(tmp_path: Path) -> None:
    auth = files(tmp_path)
    sync(auth, [DeviceLogin("a", "a")], new_passwords={"a": "1"})
    auth.password_file.chmod(0)
    with pytest.raises(MosquittoFileError, match="can't read"):
        sync(auth, [DeviceLogin("a", "a")])
