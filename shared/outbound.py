"""Where connections that users configure may go (their SMTP host now, webhook URLs later).

A non-admin user must not be able to make the server talk to itself, to cloud metadata or to
the private network behind it. So a host is resolved once, every address it resolves to is
checked, and the connection then goes to exactly the address that was checked (a second DNS
answer cannot rebind it to 127.0.0.1). Public addresses are allowed; loopback, link-local,
private, shared, multicast and reserved ones only when the operator lists them in
BIAPP_OUTBOUND_ALLOW (CIDRs, host names or `.suffix` names, each optionally with `:port`).
Admin-configured connections (the system SMTP default, data sources) do not go through here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from shared.errors import OutboundRefusedError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST_NAME = re.compile(r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


@dataclass(frozen=True)
class AllowEntry:
    """One BIAPP_OUTBOUND_ALLOW entry: a network or a host name (`.example.com` for a suffix), any port or one."""

    network: Network | None = None
    host: str | None = None
    port: int | None = None

    def admits_host(self, host: str, port: int) -> bool:
        if self.host is None or (self.port is not None and self.port != port):
            return False
        name = host.strip().rstrip(".").lower()
        return name.endswith(self.host) if self.host.startswith(".") else name == self.host

    def admits_address(self, address: Address, port: int) -> bool:
        if self.network is None or (self.port is not None and self.port != port):
            return False
        return address.version == self.network.version and address in self.network


def parse_entry(raw: str) -> AllowEntry:
    """`10.0.0.0/8`, `127.0.0.1:2525`, `[::1]:25`, `smtp.internal`, `.corp.example.com:587`; ValueError otherwise."""
    text = raw.strip().lower()
    port: int | None = None
    if text.startswith("["):
        inner, _, rest = text[1:].partition("]")
        text = inner
        if rest:
            port = _port(rest.removeprefix(":"), raw)
    elif text.count(":") == 1:
        text, port_text = text.split(":")
        port = _port(port_text, raw)
    try:
        return AllowEntry(network=ipaddress.ip_network(text, strict=False), port=port)
    except ValueError:
        pass
    label = text.removeprefix("*")
    if not _HOST_NAME.fullmatch(label):
        raise ValueError(f"{raw!r} is neither a CIDR nor a host name")
    return AllowEntry(host=label, port=port)


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{raw!r} has an invalid port")
    return int(text)


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback in disguise
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class OutboundPolicy:
    allow: tuple[AllowEntry, ...] = ()

    def resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        """The (family, sockaddr) pairs that may be connected to, in resolver order.

        OutboundRefusedError for a forbidden target (the message never says whether anything listens
        there), socket.gaierror when the name does not resolve (a connection problem like any other).
        """
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (UnicodeError, ValueError):
            raise socket.gaierror(socket.EAI_NONAME, f"{host!r} is not a valid host name") from None
        host_allowed = any(entry.admits_host(host, port) for entry in self.allow)
        targets = []
        for family, _type, _proto, _name, sockaddr in infos:
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if host_allowed or is_public(address) or any(e.admits_address(address, port) for e in self.allow):
                targets.append((family, sockaddr))
            else:
                # One forbidden answer refuses the host: a name must not mix public and internal addresses.
                raise OutboundRefusedError(
                    f"{host}:{port} is not an allowed destination: it is on a private, loopback or "
                    "link-local network (an operator can allow it with BIAPP_OUTBOUND_ALLOW)."
                )
        return targets

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to the first checked address that answers; OSError like socket.create_connection."""
        last: OSError | None = None
        for family, sockaddr in self.resolve(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"no address for {host}")
