"""A Podman Docker-compatible API for tests, and a local image (there is no registry to pull from).

Podman runs with runc, cgroupfs and ulimits within the machine's hard limits (DESIGN.md), serving
the Docker API on a socket of its own, with a container store of its own: the test modules (and
earlier runs) never see each other's containers, so "no managed container is left" is a fact
about this module, not about the machine. The image is imported from a rootfs of empty directories
and usr-merge symlinks; the tests bind-mount the host's ``/usr``, Python and the project into it,
so a container runs the real ``smokehouse worker`` without building anything.
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.services import unavailable

IMAGE = "localhost/smokehouse-hostfs:test"


def containers_conf(directory: Path) -> Path:
    nofile = min(20000, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    nproc = min(1000, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    conf = directory / "containers.conf"
    conf.write_text(
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
    )
    return conf


def storage_conf(directory: Path, runroot: Path) -> Path:
    """A store of this service's own (vfs: works on any file system; the image is tiny). The
    run root is short-pathed: conmon's attach sockets must fit in 108 bytes."""
    conf = directory / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{directory / "storage"}"\nrunroot = "{runroot}"\n'
    )
    return conf


def hostfs_tar() -> bytes:
    """An image rootfs: empty mount points and the usr-merge symlinks."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("usr", "etc", "tmp", "proc", "sys", "dev", "root", "work", "run", "var"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for link in ("bin", "lib", "lib64", "sbin"):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, f"usr/{link}"
            tar.addfile(info)
    return buffer.getvalue()


@contextmanager
def podman_api(directory: Path) -> Iterator[str]:
    """``DOCKER_HOST`` of a Podman API service running for the duration."""
    binary = shutil.which("podman")
    if binary is None or shutil.which("runc") is None:
        unavailable("podman and runc")
        raise AssertionError("unreachable")
    runroot = Path(tempfile.mkdtemp(prefix="shp-", dir="/tmp"))
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(containers_conf(directory)),
        "CONTAINERS_STORAGE_CONF": str(storage_conf(directory, runroot)),
    }
    subprocess.run(
        [binary, "import", "-", IMAGE],
        input=hostfs_tar(),
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    socket = directory / "podman.sock"
    service = subprocess.Popen(
        [binary, "system", "service", "--time=0", f"unix://{socket}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not socket.exists():
            if time.monotonic() > deadline or service.poll() is not None:
                raise AssertionError("podman system service did not start")
            time.sleep(0.1)
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(20)
        # What the module left running goes with its store (containers, then the files).
        subprocess.run(
            [binary, "rm", "--all", "--force", "--time", "0"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(directory / "storage", ignore_errors=True)
        shutil.rmtree(runroot, ignore_errors=True)
