"""The internal secret: what partner backends and operator tools send as `X-Internal-Secret`."""

from __future__ import annotations

import hmac


def internal_secret_matches(expected: str | None, given: str | None) -> bool:
    """Whether `given` is the configured secret; never when none is configured. Constant time."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
