"""SSH to the nodes with Fabric: host-key policy, connection retries, commands and file uploads.

Every failure is an SshError with its own UPPER_SNAKE code and a message that says what to do.
All calls here block; callers run them in a thread, never on the event loop.
"""

from __future__ import annotations

import io
import os
import shlex
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fabric
import paramiko
from invoke.exceptions import CommandTimedOut

from rbee.common.errors import ApiError
from rbee.common.tunables import SshTimings
from rbee.queen.nodes.node_registry import NodeSpec


class SshError(ApiError):
    """Talking to a node over SSH failed; `code` says which step, the message what to do."""

    def __init__(self, status: int, code: str, message: str, stage: str, **details: Any) -> None:
        super().__init__(status, code, message, {"stage": stage, **details})


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class KnownHosts:
    """The queen's own known_hosts file (`DATA_DIR/ssh/known_hosts`, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def load_into(self, client: paramiko.SSHClient) -> None:
        """Make `client` trust exactly the keys of this file (never ~/.ssh/known_hosts)."""
        with self._lock:
            if self.path.exists():
                client.get_host_keys().load(str(self.path))

    def append(self, hostname: str, key: paramiko.PKey) -> None:
        """Record a host key accepted on first contact."""
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname, key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's `StrictHostKeyChecking=accept-new`: record a new host; a changed key still fails."""

    def __init__(self, known_hosts: KnownHosts) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known_hosts.append(hostname, key)


class SshConnector:
    """Opens Fabric connections to nodes, trusting only the queen's known_hosts file."""

    def __init__(self, known_hosts: KnownHosts, timings: SshTimings) -> None:
        self.known_hosts = known_hosts
        self.timings = timings

    @contextmanager
    def session(self, spec: NodeSpec, accept_new_host_key: bool = False) -> Iterator[SshSession]:
        """An open session to the node (connected with retries), closed when the block ends."""
        pkey = load_key(spec)
        conn, attempts = self._connect(spec, pkey, accept_new_host_key)
        try:
            yield SshSession(conn, spec, self.timings, attempts)
        finally:
            conn.close()
            conn.client.close()

    def _connection(self, spec: NodeSpec, pkey: paramiko.PKey, accept_new: bool) -> fabric.Connection:
        timeout = self.timings.connect_timeout_s
        conn = fabric.Connection(
            host=spec.ssh_host,
            user=spec.ssh_user,
            port=spec.ssh_port,
            config=fabric.Config(ssh_config=paramiko.SSHConfig()),
            connect_timeout=timeout,
            connect_kwargs={
                "pkey": pkey,
                "look_for_keys": False,
                "allow_agent": False,
                "banner_timeout": timeout,
                "auth_timeout": timeout,
                "channel_timeout": self.timings.command_timeout_s,
            },
        )
        policy = _AcceptNew(self.known_hosts) if accept_new else _RejectUnknown()
        conn.client.set_missing_host_key_policy(policy)
        self.known_hosts.load_into(conn.client)
        return conn

    def _connect(
        self, spec: NodeSpec, pkey: paramiko.PKey, accept_new: bool
    ) -> tuple[fabric.Connection, int]:
        """Open a connection, retrying transient failures with exponential backoff."""
        delay = self.timings.backoff_initial_s
        attempts = self.timings.retries + 1
        for attempt in range(1, attempts + 1):
            conn = self._connection(spec, pkey, accept_new)
            started = time.monotonic()
            try:
                conn.open()
                return conn, attempt
            except Exception as exc:
                conn.client.close()
                waited_out = time.monotonic() - started >= self.timings.connect_timeout_s
                failure = self._connect_failure(exc, spec, waited_out)
                if failure.status < 500 or attempt == attempts:
                    failure.details["attempts"] = attempt
                    raise failure from None
            time.sleep(min(delay, self.timings.backoff_max_s))
            delay *= 2
        raise AssertionError("unreachable")

    def _connect_failure(self, exc: Exception, spec: NodeSpec, waited_out: bool) -> SshError:
        """The SshError for an exception of `Connection.open` (5xx ones are retried).

        `waited_out`: the attempt lasted the whole connect timeout, so a handshake that broke
        off (paramiko reports a dead transport in several ways) was the peer's silence.
        """
        where = f"{spec.ssh_host}:{spec.ssh_port}"
        known = self.known_hosts.path
        if isinstance(exc, _UnknownHostKey):
            return SshError(
                422, "SSH_UNKNOWN_HOST_KEY",
                f"the queen does not know the host key of {where} ({exc.key.get_name()} "
                f"{exc.key.fingerprint}). Compare that fingerprint with `ssh-keygen -lf` of the node's "
                f"/etc/ssh/ssh_host_*_key.pub, then add the key to {known} "
                f"(`ssh-keyscan -p {spec.ssh_port} {spec.ssh_host} >> {known}`) or run add-node again "
                "with --accept-new-host-key",
                "host_key", fingerprint=exc.key.fingerprint, known_hosts=str(known))
        if isinstance(exc, paramiko.BadHostKeyException):
            return SshError(
                422, "SSH_HOST_KEY_CHANGED",
                f"the host key of {where} is not the one recorded in {known} (now "
                f"{exc.key.fingerprint}): someone may be intercepting the connection. If the node was "
                f"reinstalled, remove its old key (`ssh-keygen -R '[{spec.ssh_host}]:{spec.ssh_port}' "
                f"-f {known}`) and add the node again",
                "host_key", fingerprint=exc.key.fingerprint, known_hosts=str(known))
        if isinstance(exc, paramiko.AuthenticationException):
            return SshError(
                422, "SSH_AUTH_FAILED",
                f"{spec.ssh_user}@{where} did not accept the key {spec.ssh_key}; add its public key to "
                f"~{spec.ssh_user}/.ssh/authorized_keys on the node "
                f"(`ssh-copy-id -i {spec.ssh_key}.pub -p {spec.ssh_port} {spec.ssh_user}@{spec.ssh_host}`)",
                "auth")
        if _caused_by_timeout(exc) or (waited_out and isinstance(exc, paramiko.SSHException)):
            return SshError(
                504, "SSH_TIMEOUT",
                f"no SSH answer from {where} within {self.timings.connect_timeout_s} s; check that the "
                "host is up and that a firewall does not drop the port",
                "connect")
        if isinstance(exc, OSError):
            return SshError(
                503, "SSH_UNREACHABLE",
                f"cannot connect to {where} ({_os_reason(exc)}); check the host name and port and that "
                "sshd runs on the node (`systemctl status ssh`)",
                "connect")
        return SshError(
            503, "SSH_HANDSHAKE_FAILED",
            f"{where} accepted the connection but the SSH handshake failed ({type(exc).__name__}); "
            "check that the port is sshd's",
            "connect")


@dataclass
class SshSession:
    """One open connection to a node: run commands, upload small private files."""

    conn: fabric.Connection
    spec: NodeSpec
    timings: SshTimings
    attempts: int

    @property
    def host_key_fingerprint(self) -> str:
        """The fingerprint of the key the node presented."""
        return self.conn.transport.get_remote_server_key().fingerprint

    def run(self, command: str, timeout: float | None = None) -> Any:
        """Run a shell command on the node; its result (exit code not checked).

        A command that failed after running out its time is a timeout, however Fabric's timer
        and the channel's close raced.
        """
        timeout = timeout or self.timings.command_timeout_s
        timed_out = SshError(
            504, "SSH_TIMEOUT",
            f"a command on {self.spec.ssh_host} did not finish within {timeout} s "
            "(RBEE_SSH_COMMAND_TIMEOUT_S); check the node's load", "command")
        started = time.monotonic()
        try:
            result = self.conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except CommandTimedOut:
            raise timed_out from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(
                503, "SSH_COMMAND_FAILED",
                f"connected to {self.spec.ssh_host} but could not run a command ({type(exc).__name__})",
                "command") from None
        if result.exited != 0 and time.monotonic() - started >= timeout:
            raise timed_out
        return result

    def write_private(self, path: str, content: str) -> None:
        """Write `content` to `path` on the node with mode 0600, replacing it atomically.

        The content travels on the command's stdin (never on a command line) and needs no SFTP.
        """
        target = shlex.quote(path)
        staging = shlex.quote(f"{path}.tmp")
        script = f"umask 077 && cat > {staging} && chmod 600 {staging} && mv -f {staging} {target}"
        try:
            result = self.conn.run(script, hide=True, warn=True, in_stream=io.StringIO(content),
                                   timeout=self.timings.command_timeout_s)
        except (CommandTimedOut, paramiko.SSHException, OSError, EOFError) as exc:
            raise SshError(
                503, "SSH_UPLOAD_FAILED",
                f"could not write {path} on {self.spec.ssh_host} ({type(exc).__name__})", "upload") from None
        if result.exited != 0:
            raise SshError(
                503, "SSH_UPLOAD_FAILED",
                f"could not write {path} on {self.spec.ssh_host} (exit {result.exited}); check that "
                f"{self.spec.ssh_user} may write there", "upload")


def load_key(spec: NodeSpec) -> paramiko.PKey:
    """The private key the queen uses for this node."""
    try:
        return paramiko.PKey.from_path(spec.ssh_key)
    except (paramiko.PasswordRequiredException, TypeError):
        reason = "is protected by a passphrase; give the queen a key without one"
    except (paramiko.SSHException, OSError, ValueError):
        reason = "is not an OpenSSH private key the queen can read (ed25519, ecdsa or rsa)"
    raise SshError(422, "SSH_KEY_UNUSABLE", f"the key {spec.ssh_key} {reason}", "auth")


def _caused_by_timeout(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, TimeoutError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _os_reason(exc: OSError) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        exc = next(iter(errors.values()))
    return exc.strerror or type(exc).__name__
