"""The one exception tree of BIApp Reports.

Every error a user may see carries its HTTP status and a stable `code`; the API
maps this tree to JSON in one place. Pipeline errors say whether a retry can help:
`PermanentError` subclasses fail an execution at once, `TransientError` ones retry.
"""

from __future__ import annotations


class BIAppError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors


class ValidationFailedError(BIAppError):
    status = 422
    code = "validation_error"

    def __init__(self, message: str = "The request is invalid.", *, errors: dict | None = None):
        super().__init__(message, errors=errors)


class FieldError(ValidationFailedError):
    """A single field is wrong: reported as {field: [message]}."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", errors={field: [message]})


class AuthenticationFailedError(BIAppError):
    status = 401
    code = "unauthorized"


class PermissionDeniedError(BIAppError):
    status = 403
    code = "forbidden"


class NotFoundError(BIAppError):
    status = 404
    code = "not_found"


class ConflictError(BIAppError):
    status = 409
    code = "conflict"


class GoneError(BIAppError):
    status = 410
    code = "gone"


class TooManyRequestsError(BIAppError):
    """Refused for now; `retry_after_s` says how long to wait (the API words it and sends Retry-After)."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after_s: int = 5):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailableError(BIAppError):
    status = 503
    code = "unavailable"


# --- pipeline -----------------------------------------------------------------


class PipelineError(BIAppError):
    """An error while running a report; its message is stored on the execution."""


class PermanentError(PipelineError):
    """Retrying cannot help (bad query, missing source, refused credentials)."""

    status = 422
    code = "permanent_failure"


class TransientError(PipelineError):
    """Retrying may help (connection lost, timeout, 4xx from SMTP)."""

    status = 503
    code = "transient_failure"


class QueryRejectedError(PermanentError):
    code = "query_rejected"


class QueryTimeoutError(PermanentError):
    code = "query_timeout"


class DataSourceUnavailableError(TransientError):
    code = "data_source_unavailable"


class DataSourceRefusedError(PermanentError):
    """A data source that must not be used: the app's own database, a privileged login, a path outside the root.

    Raised at save (a 422 naming `field`) and again when a run opens the source (the run fails with the message).
    """

    code = "data_source_refused"

    def __init__(self, field: str, message: str):
        super().__init__(message, errors={field: [message]})
        self.field = field


class RenderFailedError(PermanentError):
    code = "render_failed"


class SecretUnreadableError(PermanentError):
    code = "secret_unreadable"


class SmtpConfigurationError(PermanentError):
    code = "smtp_configuration"


class OutboundRefusedError(PermanentError):
    """A user-configured host resolves to an address users may not reach (BIAPP_OUTBOUND_ALLOW)."""

    code = "outbound_refused"


class SmtpTransientError(TransientError):
    code = "smtp_transient"


class IllegalTransitionError(BIAppError):
    code = "illegal_transition"
