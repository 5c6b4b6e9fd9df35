"""Which SMTP settings a report's owner sends with, and where SMTP connections may go.

A user's own configuration wins; otherwise the system-wide default set by an
admin. BIAPP_SMTP_ALLOWED_HOSTS, when set, limits the hosts any configuration may
name (checked when saving, testing and sending): an entry `smtp.example.com`
matches that host only, `.example.com` (or `*.example.com`) any host under it.
A non-admin's own configuration also obeys the outbound policy (shared/outbound.py),
and a stored password follows its host: changing host, port or user name without
giving the password again clears it.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import SmtpConfigurationError
from shared.models import EmailConfig, User
from shared.outbound import OutboundPolicy
from shared.security.crypto import SecretBox
from shared.smtp import SmtpSettings


def for_owner(session: Session, owner_id: uuid.UUID | None) -> EmailConfig | None:
    return session.execute(sa.select(EmailConfig).where(EmailConfig.owner_id == owner_id)).scalar_one_or_none()


def system_default(session: Session) -> EmailConfig | None:
    return session.execute(
        sa.select(EmailConfig).where(EmailConfig.owner_id.is_(None), EmailConfig.is_system_default.is_(True))
    ).scalar_one_or_none()


@dataclass(frozen=True)
class EffectiveConfig:
    """The configuration someone's reports send with, and where it comes from: own | system_default | none."""

    source: str
    config: EmailConfig | None


def effective_for(session: Session, owner_id: uuid.UUID) -> EffectiveConfig:
    """A user's own configuration wins; otherwise the system default; otherwise none (sending fails)."""
    own = for_owner(session, owner_id)
    if own is not None:
        return EffectiveConfig("own", own)
    default = system_default(session)
    return EffectiveConfig("system_default", default) if default is not None else EffectiveConfig("none", None)


def effective(session: Session, owner_id: uuid.UUID) -> EmailConfig:
    config = effective_for(session, owner_id).config
    if config is None:
        raise SmtpConfigurationError(
            "No email configuration: set one with PUT /api/email-config (or ask an admin for a system default)."
        )
    return config


def host_allowed(settings: Settings, host: str) -> bool:
    allowed = settings.smtp_allowed_hosts
    if not allowed:
        return True
    name = host.strip().rstrip(".").lower()
    for entry in allowed:
        suffix = entry[1:] if entry.startswith("*.") else entry
        if suffix.startswith("."):
            if name.endswith(suffix):
                return True
        elif name == entry:
            return True
    return False


def check_host_allowed(settings: Settings, host: str) -> None:
    if not host_allowed(settings, host):
        raise SmtpConfigurationError(f"SMTP host {host!r} is not in BIAPP_SMTP_ALLOWED_HOSTS.")


def outbound_for(settings: Settings, role: str | None) -> OutboundPolicy | None:
    """The outbound policy for a configuration made by someone of `role`; None (unrestricted) for admins."""
    return None if role in (None, "admin") else settings.outbound_policy


def config_outbound(session: Session, settings: Settings, config: EmailConfig) -> OutboundPolicy | None:
    """A saved configuration's policy: the system default (admin-set) is unrestricted, a user's follows its owner."""
    if config.owner_id is None:
        return None
    owner = session.get(User, config.owner_id)
    return outbound_for(settings, owner.role if owner is not None else "viewer")


def check_destination(settings: Settings, host: str, port: int, outbound: OutboundPolicy | None) -> None:
    """Refuse, before saving, a host outside BIAPP_SMTP_ALLOWED_HOSTS or (for non-admins) the outbound policy."""
    check_host_allowed(settings, host)
    if outbound is not None:
        try:
            outbound.resolve(host, port)
        except socket.gaierror:
            pass  # not resolvable now: the connection (checked again there) will say so


def connection_settings(
    settings: Settings,
    *,
    host: str,
    port: int,
    security: str,
    username: str | None,
    password: str | None,
    outbound: OutboundPolicy | None = None,
) -> SmtpSettings:
    """How to reach a server, refusing hosts outside BIAPP_SMTP_ALLOWED_HOSTS before any connection."""
    check_host_allowed(settings, host)
    return SmtpSettings(
        host=host,
        port=port,
        security=security,
        username=username or None,
        password=password,
        timeout_s=settings.smtp_timeout_s,
        ca_file=settings.smtp_ca_file,
        outbound=outbound,
    )


def stored_settings(
    settings: Settings, secrets: SecretBox, config: EmailConfig, *, outbound: OutboundPolicy | None = None
) -> SmtpSettings:
    """Connection settings of a saved configuration (its password decrypted only here)."""
    password = secrets.decrypt(config.password_encrypted, what="SMTP password") if config.password_encrypted else None
    return connection_settings(
        settings,
        host=config.host,
        port=config.port,
        security=config.security,
        username=config.username,
        password=password,
        outbound=outbound,
    )


# Well-known providers: the right port and security, and what trips people up.
PRESETS: tuple[dict, ...] = (
    {
        "key": "gmail",
        "name": "Gmail / Google Workspace",
        "host": "smtp.gmail.com",
        "port": 587,
        "security": "starttls",
        "username_hint": "your full Gmail or Workspace address",
        "notes": "Needs an app password: turn on 2-Step Verification, then create one under Google Account > "
        "Security > App passwords; the normal account password is refused. Port 465 with security 'ssl' also "
        "works. The from address must be the account or a verified alias.",
    },
    {
        "key": "outlook",
        "name": "Outlook / Microsoft 365",
        "host": "smtp.office365.com",
        "port": 587,
        "security": "starttls",
        "username_hint": "the mailbox address",
        "notes": "Microsoft 365 mailboxes need Authenticated SMTP (SMTP AUTH) enabled by an admin; with MFA use an "
        "app password where the tenant allows it. Personal Outlook.com accounts use smtp-mail.outlook.com, port "
        "587. The from address must be the mailbox or one it may send as.",
    },
    {
        "key": "yahoo",
        "name": "Yahoo Mail",
        "host": "smtp.mail.yahoo.com",
        "port": 465,
        "security": "ssl",
        "username_hint": "your full Yahoo address",
        "notes": "Needs an app password (Account security > Generate app password); the account password is "
        "refused. Port 587 with STARTTLS also works.",
    },
    {
        "key": "ses",
        "name": "Amazon SES",
        "host": "email-smtp.us-east-1.amazonaws.com",
        "port": 587,
        "security": "starttls",
        "username_hint": "the SES SMTP user name",
        "notes": "Use your SES region in the host name. The user name and password are SMTP credentials created in "
        "the SES console, not AWS access keys. The from address (or its domain) must be verified; a sandboxed "
        "account can only send to verified addresses. Port 465 with 'ssl' also works.",
    },
    {
        "key": "custom",
        "name": "Other SMTP server",
        "host": "",
        "port": 587,
        "security": "starttls",
        "username_hint": "as your mail administrator tells you",
        "notes": "587 with STARTTLS is the usual submission port, 465 is implicit TLS ('ssl'); port 25 without "
        "security only inside a trusted network. A server certificate from a private CA is trusted once the "
        "operator sets BIAPP_SMTP_CA_FILE.",
    },
)


def presets(settings: Settings) -> list[dict]:
    """The provider presets, each saying whether BIAPP_SMTP_ALLOWED_HOSTS lets it be used here."""
    return [{**p, "allowed": not p["host"] or host_allowed(settings, p["host"])} for p in PRESETS]


def sending_settings(session: Session, settings: Settings, secrets: SecretBox, config: EmailConfig) -> SmtpSettings:
    """What the mailer connects with: the saved settings under the policy of whoever made them."""
    return stored_settings(settings, secrets, config, outbound=config_outbound(session, settings, config))
