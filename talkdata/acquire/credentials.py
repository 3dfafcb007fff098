"""Credentials for corpora behind a login: environment variables first, then ``~/.netrc``.

Two kinds exist: ``basic`` (user name + password, sent as HTTP basic auth: LRW, VoxCeleb2 on the
VGG host) and ``key`` (a download key placed in the URL: VoxCeleb2 on the KAIST mirror). The
recipe names the environment variables; ``~/.netrc`` (or the file ``$NETRC`` names) is looked up
by the host actually contacted, as curl and wget do, so credentials for one host are never sent to
another (a ``--mirror`` host needs its own netrc entry or the environment variables).

Secrets never appear in messages: :class:`Credential` hides them from ``repr`` and every message
here names the variable or the netrc machine, never the value.
"""

from __future__ import annotations

import base64
import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import UserError


@dataclass(frozen=True)
class Credential:
    """A user name + password (``basic``) or a download key (``key``); ``origin`` says where it came from."""

    kind: str
    user: str = ""
    secret: str = field(default="", repr=False)
    origin: str = ""

    def __repr__(self) -> str:  # never show the secret, even in tracebacks
        return f"Credential(kind={self.kind!r}, user={self.user!r}, secret='***', origin={self.origin!r})"

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.secret}".encode("utf-8")).decode("ascii")
        return f"Basic {token}"


def netrc_file(env: Mapping[str, str] | None = None) -> Path:
    """``$NETRC`` when set, else ``~/.netrc``."""
    env = os.environ if env is None else env
    return Path(env.get("NETRC") or Path.home() / ".netrc").expanduser()


def from_netrc(host: str, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(user, password)`` of the netrc entry for ``host`` (or its ``default`` entry), or None."""
    path = netrc_file(env)
    if not host or not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except netrc.NetrcParseError as err:
        # the parser's own message can quote a token of the file (possibly a password): say only where
        raise UserError(f"cannot parse {path} (line {err.lineno}): fix the entry or remove the file") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    if entry is None:
        return None
    login, _account, password = entry
    if not login or not password:
        return None
    return login, password


def basic_credential(user_env: str, password_env: str, host: str, env: Mapping[str, str] | None = None,
                     use_netrc: bool = True) -> Credential | None:
    """User + password from ``user_env``/``password_env``, else from the netrc entry of ``host``."""
    env = os.environ if env is None else env
    user, password = env.get(user_env, ""), env.get(password_env, "")
    if user and password:
        return Credential("basic", user, password, f"{user_env} / {password_env}")
    if user or password:
        missing = password_env if user else user_env
        raise UserError(f"{user_env if user else password_env} is set but {missing} is not: set both")
    if use_netrc:
        found = from_netrc(host, env)
        if found:
            return Credential("basic", found[0], found[1], f"{netrc_file(env)} machine {host}")
    return None


def key_credential(key_env: str, env: Mapping[str, str] | None = None) -> Credential | None:
    """A download key from ``key_env``."""
    env = os.environ if env is None else env
    key = env.get(key_env, "").strip()
    return Credential("key", "", key, key_env) if key else None
