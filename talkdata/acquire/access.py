"""Access: which of a recipe's ``[[download.access]]`` methods is usable (credentials from the
environment, then netrc), and the HTTP jobs it gives (real URL, URL safe to print, headers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import quote, urlsplit

from ..errors import UserError
from . import credentials, http
from .plan import RemoteFile, mirror_login, mirror_url


@dataclass(frozen=True)
class Access:
    """How the archives are reached: a URL template and, behind a login, the credential."""

    url: str
    auth: str = "none"
    credential: credentials.Credential | None = field(default=None, repr=False)


def _access_host(method: Mapping, mirror: str | None) -> str:
    return urlsplit(mirror_url(method["url"].replace("{path}", "x").replace("{key}", "x"), mirror)).hostname or ""


def requirement(method: Mapping, mirror: str | None) -> str:
    if method.get("auth") == "key":
        return f"{method['key_env']} (a download key)"
    if method.get("auth") == "basic":
        text = f"{method['user_env']} and {method['password_env']}"
        if method.get("netrc", True):
            text += f" (or a ~/.netrc entry for machine {_access_host(method, mirror)})"
        return text
    return "nothing"


def credential_hint(spec: Mapping, mirror: str | None) -> str:
    """``set X (...), or Y and Z (...); request access: ...`` for messages."""
    needs = [requirement(m, mirror) for m in spec.get("access", []) if m.get("auth", "none") != "none"]
    text = "set " + ", or ".join(needs) if needs else "no credentials are configured for this source"
    if spec.get("request_access"):
        text += f"; request access: {spec['request_access']}"
    return text


def mirror_credential(mirror: str | None) -> credentials.Credential | None:
    """The user name and password of ``--mirror http://user:password@host/``, sent as basic auth."""
    login = mirror_login(mirror)
    return credentials.Credential("basic", login[0], login[1], "the --mirror URL") if login else None


def choose_access(spec: Mapping, mirror: str | None, env: Mapping[str, str] | None = None, recipe: str = "") -> Access:
    """The first access method whose credentials are available (--mirror's login, environment, then netrc)."""
    methods = spec.get("access", [])
    from_mirror = mirror_credential(mirror)
    for method in methods:
        auth = method.get("auth", "none")
        if auth == "none":
            return Access(method["url"], "none")
        if auth == "basic" and from_mirror is not None:
            return Access(method["url"], auth, from_mirror)
        if auth == "key":
            credential = credentials.key_credential(method["key_env"], env)
        else:
            credential = credentials.basic_credential(method["user_env"], method["password_env"],
                                                      _access_host(method, mirror), env, method.get("netrc", True))
        if credential is not None:
            return Access(method["url"], auth, credential)
    raise UserError(f"{recipe} needs credentials: {credential_hint(spec, mirror)}")


def _url_for(f: RemoteFile, access: Access | None, mirror: str | None) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(real URL, URL safe to print, headers) of one file; ``--mirror``'s login goes into the headers."""
    login = mirror_credential(mirror)
    mirror_headers = (("Authorization", login.basic_header()),) if login is not None else ()
    if f.url:
        url = mirror_url(f.url, mirror)
        return url, url, mirror_headers
    if access is None:
        raise UserError(f"recipe [download]: {f.name} has no url and the recipe has no [[download.access]]")
    path = quote(f.path, safe="/")
    headers: tuple[tuple[str, str], ...] = ()
    if access.auth == "key" and access.credential is not None:
        real = access.url.format(path=path, key=quote(access.credential.secret, safe=""))
        public = access.url.format(path=path, key="***")
    else:
        real = public = access.url.format(path=path, key="")
        if access.auth == "basic" and access.credential is not None:
            headers = (("Authorization", access.credential.basic_header()),)
    return mirror_url(real, mirror), mirror_url(public, mirror), mirror_headers or headers


def jobs(files: list[RemoteFile], root: Path, access: Access | None, mirror: str | None) -> list[http.Job]:
    out = []
    for f in files:
        url, public, headers = _url_for(f, access, mirror)
        out.append(http.Job(label=f.name, url=url, public_url=public, dest=root / f.dest, size=f.size,
                            checksum=f.checksum, headers=headers, optional=f.optional))
    return out

