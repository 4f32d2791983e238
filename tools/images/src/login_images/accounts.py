"""Accounts written into an image without running ``useradd``: the TOML spec's ``[[base.users]]``, for
bases with no shadow utilities (scratch) as for Debian ones. Groups already present (by name or gid) are
not repeated; a user whose name or uid exists is refused."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from login_images.errors import BuildError
from login_images.spec import User


def passwd_lines(users: Sequence[User], groups_present: Sequence[str] = ()) -> tuple[str, str, str, str]:
    """Lines for passwd, group, shadow, gshadow; groups whose name or gid is present are not repeated."""
    passwd = "".join(f"{u.name}:x:{u.uid}:{u.gid}::{u.home}:{u.shell}\n" for u in users)
    groups: dict[int, str] = {}
    for user in users:
        name = user.group or user.name
        if user.gid not in groups and name not in groups_present and str(user.gid) not in groups_present:
            groups[user.gid] = name
    group = "".join(f"{name}:x:{gid}:\n" for gid, name in groups.items())
    shadow = "".join(f"{u.name}:!:::::::\n" for u in users)
    gshadow = "".join(f"{name}:!::\n" for name in groups.values())
    return passwd, group, shadow, gshadow


def _present(text: str) -> list[str]:
    """Names and ids of the accounts of a passwd or group file."""
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2:
            out += [fields[0], fields[2]]
    return out


def user_files(root: Path, users: Sequence[User]) -> dict[str, bytes]:
    """/etc/passwd, group (and shadow, gshadow when present) of ``root`` with ``users`` appended."""
    if not users:
        return {}
    passwd_file, group_file = root / "etc" / "passwd", root / "etc" / "group"
    accounts = _present(passwd_file.read_text()) if passwd_file.exists() else []
    for user in users:
        if user.name in accounts[0::2] or str(user.uid) in accounts[1::2]:
            raise BuildError(f"user {user.name} ({user.uid}): the base already has that name or uid")
    groups_present = _present(group_file.read_text()) if group_file.exists() else []
    out = {}
    lines = passwd_lines(users, groups_present)
    for rel, extra in zip(("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"), lines, strict=True):
        path = root / rel
        if path.exists():
            out[rel] = path.read_bytes() + extra.encode()
    return out


def scratch_root(root: Path, users: Sequence[User]) -> None:
    """An empty root: /etc with passwd and group (root and ``users``), /tmp (1777)."""
    (root / "etc").mkdir(parents=True)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "etc", 0o755)
    os.chmod(root, 0o755)
    passwd, group, _, _ = passwd_lines(users, ["root", "0"])
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n" + passwd)
    (root / "etc" / "group").write_text("root:x:0:\n" + group)
    os.chmod(root / "etc" / "passwd", 0o644)
    os.chmod(root / "etc" / "group", 0o644)
