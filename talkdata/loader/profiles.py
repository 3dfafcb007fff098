"""The registry of loader profiles: name -> :class:`~talkdata.loader.profile_base.Profile`.

The base class and its helpers live in :mod:`talkdata.loader.profile_base` (re-exported here); the
profile modules (``raw``, ``atvg``, ``sda``, ``diffused_heads``, ``facial``, ``vid2vid``) each hold
one profile, and the docstring of each says which published code it follows.
"""

from __future__ import annotations

from ..declare import did_you_mean
from ..errors import UserError
from .profile_base import ItemContext, Option, Profile, option

__all__ = ["ItemContext", "Option", "Profile", "get_profile", "option", "registry"]


def registry() -> dict[str | None, Profile]:
    from .atvg import ATVG
    from .diffused_heads import DiffusedHeads
    from .facial import FACIAL
    from .raw import Raw
    from .sda import SDA
    from .vid2vid import Vid2Vid

    return {None: Raw(), "atvg": ATVG(), "sda": SDA(), "diffused_heads": DiffusedHeads(), "facial": FACIAL(),
            "vid2vid": Vid2Vid()}


def get_profile(name: str | None) -> Profile:
    profiles = registry()
    if name not in profiles:
        known = ", ".join(sorted(k for k in profiles if k))
        hint = did_you_mean(name, [k for k in profiles if k]) if isinstance(name, str) else ""
        raise UserError(f"unknown profile {name!r}{hint}{' ' if hint else '; '}known profiles: {known} "
                        "(or None for plain windows)")
    return profiles[name]
