"""simenv's base image, built offline from Debian's packages (no image registry needed).

:func:`build_base_image` runs ``debootstrap --variant=minbase`` (Debian bookworm plus
``python3``), slims the tree (no docs, man pages, locales or apt lists), adds the ``sandbox``
user (uid 1000) and imports it with ``docker import``. It is cached twice: an image with the tag
is never rebuilt, and the root file system's tar is kept in the cache directory
(``$SIMENV_CACHE``, else ``$XDG_CACHE_HOME/simenv``, else ``~/.cache/simenv``), so an engine
whose images were wiped gets it back with a 3-second import instead of a 1-2 minute debootstrap.
debootstrap checks the Release file against Debian's archive keyring, as apt does.

Bringing your own image instead: anything with ``python3`` (3.8 or newer) on ``PATH`` works,
e.g. ``FROM python:3.12-slim`` built where a registry is reachable, or ``docker import`` of any
root file system. Set ``image = "yours:tag"`` on the sandbox class; the container's command,
user, limits and work dir are set by simenv, not by the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from simenv.errors import InfraError
from simenv.tools.docker.container import docker_client

__all__ = ["BASE_IMAGE", "build_base_image", "cache_dir", "image_exists"]

BASE_IMAGE = "simenv/base:bookworm-py3"
"""The tag :func:`build_base_image` builds and :class:`~simenv.tools.docker.DockerSandbox` uses."""

_SLIM = ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists")


def cache_dir() -> Path:
    """Where the base image's root file system tar is kept."""
    if os.environ.get("SIMENV_CACHE"):
        return Path(os.environ["SIMENV_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "simenv"


def image_exists(tag: str = BASE_IMAGE, client: Any = None) -> bool:
    """Whether the engine has an image with this tag."""
    import docker

    own = client is None
    client = client or docker_client()
    try:
        client.api.inspect_image(tag)
    except docker.errors.ImageNotFound:
        return False
    finally:
        if own:
            client.close()
    return True


def _run(argv: Sequence[str], what: str, fix: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise InfraError(f"{what} failed (exit {done.returncode}); {fix}\n{tail}")


def _make_rootfs(rootfs: Path, suite: str, mirror: str, packages: Sequence[str]) -> None:
    if shutil.which("debootstrap") is None:
        raise InfraError(
            "building the base image needs debootstrap: apt-get install -y debootstrap "
            "(or bring your own image with python3 and set `image` on the sandbox)"
        )
    if os.geteuid() != 0:
        raise InfraError("debootstrap needs root: run `simenv docker build-base` as root")
    _run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
         str(rootfs), mirror],
        "debootstrap",
        f"check that {mirror} is reachable (or pass another mirror)",
    )  # fmt: skip
    for relative in _SLIM:
        target = rootfs / relative
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    with (rootfs / "etc/passwd").open("a") as passwd:
        passwd.write("sandbox:x:1000:1000:simenv sandbox:/work:/usr/sbin/nologin\n")
    with (rootfs / "etc/group").open("a") as group:
        group.write("sandbox:x:1000:\n")
    (rootfs / "work").mkdir(mode=0o755, exist_ok=True)


def build_base_image(
    tag: str = BASE_IMAGE,
    *,
    suite: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
    packages: Sequence[str] = ("python3",),
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> str:
    """Build (or find) the base image and return its tag.

    Skips everything when the engine already has ``tag`` (unless ``force``); imports the cached
    root file system tar when there is one; otherwise runs debootstrap (root, network access
    to the mirror, 1-2 minutes).

    Args:
        tag: Image tag to create.
        suite: Debian release.
        mirror: Debian mirror for debootstrap.
        packages: Packages added to the minimal base (``python3`` is required by simenv).
        force: Rebuild from scratch even if the image or the cached tar exists.
        log: Called with a line of progress now and then (e.g. ``print``).

    Raises:
        InfraError: No engine, no debootstrap, not root, or the mirror is unreachable.
    """
    client = docker_client(timeout_s=600)
    try:
        return _build(client, tag, suite, mirror, packages, force, log or (lambda _line: None))
    finally:
        client.close()


def _build(
    client: Any,
    tag: str,
    suite: str,
    mirror: str,
    packages: Sequence[str],
    force: bool,
    say: Callable[[str], None],
) -> str:
    if not force and image_exists(tag, client):
        say(f"{tag} is already built")
        return tag
    cached = cache_dir() / f"{tag.replace('/', '_').replace(':', '_')}.tar"
    if force or not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="simenv-rootfs-", dir=cached.parent) as tmp:
            rootfs = Path(tmp) / "rootfs"
            say(f"debootstrap {suite} + {', '.join(packages)} from {mirror} (1-2 minutes)")
            _make_rootfs(rootfs, suite, mirror, packages)
            partial = Path(tmp) / "rootfs.tar"
            _run(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
                "packing the root file system",
                f"check free space in {cached.parent}",
            )
            partial.replace(cached)
    say(f"docker import {cached} as {tag}")
    repository, version = tag, "latest"
    if ":" in tag.rsplit("/", 1)[-1]:
        repository, _, version = tag.rpartition(":")
    client.api.import_image_from_file(
        str(cached),
        repository=repository,
        tag=version,
        changes=[
            "USER 1000:1000",
            "WORKDIR /work",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8",
            f'LABEL simenv.base="{suite} {" ".join(packages)}"',
        ],
    )
    if not image_exists(tag, client):
        raise InfraError(f"docker import of {cached} did not create {tag}; see dockerd's log")
    return tag
