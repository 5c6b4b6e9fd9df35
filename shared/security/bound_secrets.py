"""A stored password belongs to the endpoint and login it was saved for.

Used by every form that stores a password beside a host (SMTP settings, data sources): a
change of host, port or user name without the password given again clears the stored one,
so a saved secret can never be sent to a host its owner did not give it for.
"""

from __future__ import annotations

from shared.security.crypto import SecretBox

SECRET_BINDING = ("host", "port", "username")


def same_endpoint(stored: object, changes: dict, fields: tuple[str, ...] = SECRET_BINDING) -> bool:
    """True when `changes` leave every field the stored secret is bound to as it is (host case-insensitively)."""
    for name in fields:
        if name not in changes:
            continue
        old, new = getattr(stored, name), changes[name]
        if name == "host":
            old, new = (old or "").strip().rstrip(".").lower(), (new or "").strip().rstrip(".").lower()
        elif name == "username":
            old, new = old or None, new or None
        if old != new:
            return False
    return True


def apply_secret(target: object, changes: dict, secrets: SecretBox, *, fields: tuple[str, ...] = SECRET_BINDING):
    """Apply `changes` (which may hold `password`) so that a secret follows its host.

    A password given is stored (empty clears it). Without one, a change of host, port or user name
    clears the stored password: it is never sent anywhere but where it was saved for.
    """
    changes = dict(changes)
    password = changes.pop("password", None)
    keeps_endpoint = same_endpoint(target, changes, fields)
    for key, value in changes.items():
        setattr(target, key, value)
    if password is not None:
        target.password_encrypted = secrets.encrypt(password) if password else None
    elif not keeps_endpoint:
        target.password_encrypted = None
