"""`[metrics]`: where `/metrics` is served besides the main port.

`GET /metrics` is always served on the main port to a caller with the internal secret.
`listen = "127.0.0.1:9464"` serves it also on a separate address, without the secret,
for a Prometheus that scrapes over loopback or a private network and should not hold
the operator's secret (the secret also opens the admin API).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

_KEYS = {"listen"}
# host:port, the host a name, an IPv4 address or a bracketed IPv6 one
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*):(\d{1,5})$")


@dataclass(frozen=True)
class MetricsSettings:
    listen: str | None = None  # "host:port" of the secret-less listener; None: none


def parse_metrics(table: Mapping[str, Any]) -> MetricsSettings:
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"config [metrics]: unknown setting {sorted(unknown)[0]!r}")
    listen = table.get("listen")
    if listen is None:
        return MetricsSettings()
    match = _ADDRESS.match(listen) if isinstance(listen, str) else None
    if match is None or int(match.group(2)) > 65535:
        raise ConfigError(
            f'[metrics] listen: expected "host:port" (e.g. "127.0.0.1:9464"), got {listen!r}'
        )
    return MetricsSettings(listen=listen)
