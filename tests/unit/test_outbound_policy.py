"""The outbound policy: which addresses a non-admin's connections may reach, checked where they connect."""

from __future__ import annotations

import socket

import pytest

from shared.errors import OutboundRefusedError
from shared.outbound import OutboundPolicy, parse_entry
from tests.support import make_settings

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "127.1",
    "2130706433",
    "0x7f000001",
    "::1",
    "::ffff:127.0.0.1",
    "0.0.0.0",
]
INTERNAL = ["169.254.169.254", "10.1.2.3", "172.16.0.9", "192.168.1.1", "100.64.0.1", "fd00::1", "fe80::1", "224.0.0.1"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + INTERNAL)
def test_internal_addresses_are_refused_however_they_are_spelled(host):
    with pytest.raises(OutboundRefusedError, match="not an allowed destination"):
        OutboundPolicy().resolve(host, 25)


def test_public_addresses_are_allowed():
    assert OutboundPolicy().resolve("8.8.8.8", 587) == [(socket.AF_INET, ("8.8.8.8", 587))]


def test_a_name_with_one_internal_answer_is_refused(monkeypatch):
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 25)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 25)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(OutboundRefusedError):
        OutboundPolicy().resolve("mixed.example.com", 25)


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch):
    """A second DNS answer (rebinding to 127.0.0.1) is never asked for: one lookup, one checked target."""
    lookups = []
    connected = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        address = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    class FakeSocket:
        def __init__(self, *args):
            pass

        def settimeout(self, value):
            pass

        def connect(self, sockaddr):
            connected.append(sockaddr)

        def close(self):
            pass

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(socket, "socket", FakeSocket)
    OutboundPolicy().connect("rebind.example.com", 25, 5)
    assert lookups == ["rebind.example.com"]
    assert connected == [("93.184.216.34", 25)]


@pytest.mark.parametrize(
    ("entry", "host", "port", "allowed"),
    [
        ("127.0.0.1:2525", "127.0.0.1", 2525, True),
        ("127.0.0.1:2525", "127.0.0.1", 25, False),
        ("127.0.0.0/8", "127.0.0.1", 25, True),
        ("[::1]:25", "::1", 25, True),
        ("localhost", "localhost", 25, True),
        (".internal.example", "localhost", 25, False),
    ],
)
def test_operators_allow_networks_hosts_and_ports(entry, host, port, allowed):
    policy = OutboundPolicy((parse_entry(entry),))
    if allowed:
        assert policy.resolve(host, port)
    else:
        with pytest.raises(OutboundRefusedError):
            policy.resolve(host, port)


@pytest.mark.parametrize("bad", ["not a host!", "10.0.0.0/8:99999", "[::1]:x"])
def test_a_bad_allow_entry_stops_the_service_with_one_line(bad):
    from shared.config import ConfigError

    with pytest.raises(ConfigError, match="BIAPP_OUTBOUND_ALLOW"):
        make_settings(BIAPP_OUTBOUND_ALLOW=bad)
