"""A node's registration (`POST /v2/registry/beehives/add`): SSH user, key file, absolute paths, ports."""

from __future__ import annotations

import os
import re
import stat
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import Field, StrictBool

from rbee.common.defaults import HIVE_PORT
from rbee.common.request_body import RequestBody
from rbee.common.request_fields import DefaultWhen, NodeName, Port, checked
from rbee.common.validation import MAX_PATH_CHARS, invalid
from rbee.queen.nodes.node_registry import DEFAULT_INSTALL_PATH, DEFAULT_SSH_PORT, NodeSpec

_SSH_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+@-]*$")


def _check_ssh_user(field_name: str, value: Any) -> str:
    if not isinstance(value, str) or not _SSH_USER.fullmatch(value):
        raise invalid(field_name, "must be a POSIX user name (lower-case letters, digits, '_', '-')")
    return value


def _check_abs_path(field_name: str, value: Any) -> str:
    """An absolute, normalised POSIX path without `..`, spaces or shell characters."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise invalid(field_name, "must be an absolute path")
    if len(value) > MAX_PATH_CHARS or not _SAFE_PATH.fullmatch(value):
        raise invalid(field_name, "must use only letters, digits and '_./+@-'")
    if ".." in PurePosixPath(value).parts or "//" in value:
        raise invalid(field_name, "must be normalised (no '..' or '//')")
    return value.rstrip("/") or "/"


def _check_key_file(field_name: str, value: Any) -> str:
    """The private key: an existing regular file on the queen's machine, not readable by others."""
    path = _check_abs_path(field_name, value)
    try:
        info = os.stat(path)
    except OSError:
        raise invalid(field_name, "must be an existing file on the queen's machine") from None
    if not stat.S_ISREG(info.st_mode):
        raise invalid(field_name, "must be a regular file")
    if info.st_mode & 0o077:
        raise invalid(field_name, "must not be readable by group or others (chmod 600)")
    return path


_PATH = Field(min_length=1, max_length=MAX_PATH_CHARS, pattern=_SAFE_PATH.pattern)
AbsPath = Annotated[str, _PATH, checked(_check_abs_path)]
KeyFile = Annotated[str, _PATH, checked(_check_key_file),
                    Field(description="absolute path of a private key file on the queen's machine")]


class NodeAdd(RequestBody):
    """`POST /v2/registry/beehives/add`: how the queen reaches a node; `update` replaces a node of
    that name, `accept_new_host_key` trusts a host key seen for the first time."""

    name: NodeName
    ssh_host: NodeName
    ssh_port: Port = DEFAULT_SSH_PORT
    ssh_user: Annotated[str, Field(pattern=_SSH_USER.pattern), checked(_check_ssh_user)]
    ssh_key: KeyFile
    install_path: Annotated[AbsPath, Field(description="rbee's prefix on the node; the queen runs "
                                                       "<install_path>/bin/rbee")] = DEFAULT_INSTALL_PATH
    hive_port: Annotated[Port, Field(description="port of the node's hive")] = HIVE_PORT
    hive_data_dir: Annotated[AbsPath, DefaultWhen((None, "")),
                             Field(description="the hive's data dir on the node (default "
                                               "<install_path>/var/hive)")] = ""
    update: StrictBool = False
    accept_new_host_key: StrictBool = False

    def spec(self) -> NodeSpec:
        """The node as the registry stores it."""
        return NodeSpec(self.name, self.ssh_host, self.ssh_port, self.ssh_user, self.ssh_key,
                        self.install_path, self.hive_port, self.hive_data_dir)
