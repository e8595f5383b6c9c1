"""Host names every adapter judges the same way."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """localhost or a loopback address: where local stand-ins of Slack's and Microsoft's services run."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
