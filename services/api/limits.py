"""Rate limits (login attempts); storage is memory unless BIAPP_RATELIMIT_STORAGE_URL says otherwise."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address, default_limits=[])
