"""User names, and the /move roots that belong to a user.

A user name comes from a tokens file, an OIDC claim or a trusted proxy's header, and it ends up in
places where its shape matters: the IngestJob spec, the policy service's request, and per-user
/move roots (`/data/{user}/outbox`), where a name such as `../bob` would be a way into another
user's folder. So one rule, checked where a name enters the service: a name is 1-253 characters
of letters, digits and `. _ @ + -`, starting with a letter or digit (an e-mail address, a POSIX
login and a Kerberos-style short name all fit; a path never does).
"""
from __future__ import annotations

import os
import re
from typing import Final

USER_PLACEHOLDER: Final = "{user}"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,252}")


def is_user_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and ".." not in name


def roots_for(roots: tuple[str, ...], user: str | None) -> tuple[str, ...]:
    """The filesystem roots `user` may move from, normalised.

    With a user (authentication on), only the roots containing `{user}`, filled in: a root without
    it is nobody's in particular, so nobody may take files from it. Without a user (authentication
    off, Pacifica's default) only the roots without `{user}`.
    """
    if user is None:
        return tuple(os.path.normpath(root) for root in roots if USER_PLACEHOLDER not in root)
    if not is_user_name(user):
        return ()
    return tuple(os.path.normpath(root.replace(USER_PLACEHOLDER, user)) for root in roots if USER_PLACEHOLDER in root)
