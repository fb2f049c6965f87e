"""loopback.is_local_client: what development mode nobody asked for still serves.

A pure function over the scope: a loopback (or TestClient) client whose
request names no proxy. Everything else, including no client at all, is not
local. Compared with an independent reference built on ``ipaddress`` networks.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_apikey.loopback import PROXY_HEADERS, is_local_client, is_loopback

_LOOPBACK_4 = ipaddress.ip_network("127.0.0.0/8")


def scope(client: Any, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    host = [(b"host", b"127.0.0.1:8000")]
    return {"type": "http", "client": client, "headers": [*host, *(headers or [])]}


@pytest.mark.parametrize(
    ("client", "local"),
    [
        pytest.param(("127.0.0.1", 5000), True, id="127.0.0.1"),
        pytest.param(("127.254.3.9", 1), True, id="127/8"),
        pytest.param(["127.0.0.1", 5000], True, id="list"),
        pytest.param(("::1", 5000), True, id="::1"),
        pytest.param(("0:0:0:0:0:0:0:1", 5000), True, id="::1-long"),
        pytest.param(("::ffff:127.0.0.1", 5000), True, id="v4-mapped-loopback"),
        pytest.param(("testclient", 50000), True, id="starlette-testclient"),
        pytest.param(("10.0.0.7", 5000), False, id="private"),
        pytest.param(("192.168.1.2", 5000), False, id="lan"),
        pytest.param(("203.0.113.9", 5000), False, id="public"),
        pytest.param(("128.0.0.1", 5000), False, id="just-past-127/8"),
        pytest.param(("126.255.255.255", 5000), False, id="just-before-127/8"),
        pytest.param(("0.0.0.0", 5000), False, id="unspecified"),  # noqa: S104 - a client
        pytest.param(("::", 5000), False, id="v6-unspecified"),
        pytest.param(("::ffff:10.0.0.1", 5000), False, id="v4-mapped-private"),
        pytest.param(("2001:db8::1", 5000), False, id="v6-public"),
        pytest.param(("localhost", 5000), False, id="a-name"),
        pytest.param(("127.0.0.1 ", 5000), False, id="padded"),
        pytest.param(("TestClient", 5000), False, id="testclient-other-case"),
        pytest.param(None, False, id="no-client-unix-socket"),
        pytest.param((), False, id="empty"),
        pytest.param((None, 0), False, id="no-host"),
        pytest.param((2130706433, 0), False, id="int-host"),
        pytest.param("127.0.0.1", False, id="a-bare-string"),
    ],
)
def test_which_clients_are_local(client: Any, local: bool) -> None:
    assert is_local_client(scope(client)) is local


def test_a_scope_without_a_client_key_is_not_local() -> None:
    assert is_local_client({"type": "http", "headers": []}) is False


@pytest.mark.parametrize("name", [*sorted(PROXY_HEADERS), b"X-Forwarded-For", b"X-REAL-IP"])
@pytest.mark.parametrize("client", [("127.0.0.1", 1), ("::1", 1), ("testclient", 1)])
def test_a_proxied_request_is_never_local(name: bytes, client: tuple[str, int]) -> None:
    # A reverse proxy on this machine makes every client look like loopback.
    assert is_local_client(scope(client, [(name, b"203.0.113.9")])) is False
    assert is_local_client(scope(client, [(name, b"")])) is False  # empty: still relayed
    assert is_local_client(scope(client, [(name.decode(), b"x")])) is False  # type: ignore[list-item]


@pytest.mark.parametrize(
    "name",
    [b"x-forwarded-proto", b"X-Forwarded-Host", b"via", b"x-envoy-attempt", b"cf-connecting-ip"],
)
def test_every_relay_header_makes_a_request_not_local(name: bytes) -> None:
    """The second review: an Envoy sidecar sends from 127.0.0.6 with x-envoy-* and
    x-forwarded-proto, but no X-Forwarded-For."""
    assert is_local_client(scope(("127.0.0.6", 1), [(name, b"1")])) is False


def test_headers_that_no_relay_adds_do_not_matter() -> None:
    headers = [(b"x-request-id", b"1"), (b"accept", b"*/*"), (b"user-agent", b"curl")]
    assert is_local_client(scope(("127.0.0.1", 1), headers)) is True


@pytest.mark.parametrize(
    ("host", "local"),
    [
        (b"localhost", True),
        (b"localhost:8000", True),
        (b"LOCALHOST.", True),
        (b"api.localhost:8000", True),
        (b"127.0.0.1:8000", True),
        (b"127.9.9.9", True),
        (b"[::1]:8000", True),
        (b"[::1]", True),
        (b"testserver", True),
        (b"rebind.attacker.example:8000", False),  # DNS rebinding: the page's own name
        (b"localhost.attacker.example", False),
        (b"127.0.0.1.nip.io", False),
        (b"svc.ns.svc.cluster.local", False),  # a mesh sidecar keeps the service's name
        (b"10.0.0.7:8000", False),
        (b"[2001:db8::1]:80", False),
        (b"[::1", False),
        (b"", False),
    ],
)
def test_the_host_must_name_this_machine(host: bytes, local: bool) -> None:
    request = {"type": "http", "client": ("127.0.0.1", 1), "headers": [(b"host", host)]}
    assert is_local_client(request) is local


def test_a_request_without_a_host_header_is_judged_by_its_client() -> None:
    assert is_local_client({"type": "http", "client": ("127.0.0.1", 1), "headers": []}) is True


@pytest.mark.parametrize(
    ("origin", "local"),
    [
        (b"http://localhost:3000", True),
        (b"http://127.0.0.1:8000", True),
        (b"https://[::1]", True),
        (b"http://rebind.attacker.example:8000", False),
        (b"null", False),  # a sandboxed frame or a file: no host to trust
        (b"file://", False),
        (b"http://[::1", False),
    ],
)
def test_an_origin_must_name_this_machine_too(origin: bytes, local: bool) -> None:
    assert is_local_client(scope(("127.0.0.1", 1), [(b"origin", origin)])) is local


@pytest.mark.parametrize("headers", [[()], [(None, b"x")], [(b"host",)], [(b"host", None)]])
def test_a_malformed_header_list_is_not_local_and_does_not_raise(headers: list[Any]) -> None:
    request = {"type": "http", "client": ("127.0.0.1", 1), "headers": headers}
    assert is_local_client(request) is False


def reference(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "testclient"
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped in _LOOPBACK_4
        return int(address) == 1  # ::1, whatever its zone
    return address in _LOOPBACK_4


hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.ip_addresses(v=4, network="127.0.0.0/8").map(str),
    st.text(max_size=20),
)
other_headers = st.lists(
    st.tuples(
        st.sampled_from([b"accept", b"x-request-id", b"user-agent", b"cookie"]),
        st.binary(max_size=8),
    ),
    max_size=4,
)


@given(host=hosts, headers=other_headers, proxy=st.sampled_from(sorted(PROXY_HEADERS)))
def test_local_is_loopback_without_proxy_headers(
    host: str, headers: list[tuple[bytes, bytes]], proxy: bytes
) -> None:
    expected = reference(host)
    assert is_loopback(host) is (expected and host != "testclient")
    assert is_local_client(scope((host, 1), headers)) is expected
    # One proxy header anywhere among them: never local, whatever the client.
    for at in range(len(headers) + 1):
        proxied = [*headers[:at], (proxy, b"198.51.100.4"), *headers[at:]]
        assert is_local_client(scope((host, 1), proxied)) is False
