"""Rate limits (login attempts); storage is memory unless BIAPP_RATELIMIT_STORAGE_URL says otherwise.

A refused request's Retry-After is the error handler's (services/api/errors.py), the same number its
message gives; the limiter's own per-response estimate goes to X-RateLimit-Retry-After instead of
overwriting it a moment later, rounded differently.
"""

from flask_limiter import HeaderNames, Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(
    key_func=get_remote_address,
    default_limits=[],
    header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Retry-After"},
)
