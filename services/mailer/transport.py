"""The mailer's SMTP transport; it lives in shared.smtp so the API can test a configuration too."""

from shared.smtp import (  # noqa: F401 (re-exported for the mailer and its tests)
    MailSession,
    RecordingTransport,
    SendRefused,
    SmtpFailure,
    SmtplibSession,
    SmtplibTransport,
    SmtpSettings,
    Transport,
    classify,
)
