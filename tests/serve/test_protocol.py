"""Server addresses and the errors a server answers, mapped back to visionrt's errors."""

from __future__ import annotations

import pytest

from visionrt.errors import ConfigError, ImageDecodeError, ServerError
from visionrt.serve.protocol import Endpoint, RequestError, parse_url


@pytest.mark.parametrize(("url", "protocol", "expected"), [
    ("http://h:9000", None, Endpoint("http", "h", 9000)),
    ("h", None, Endpoint("http", "h", 8000)),
    ("h:1234", "grpc", Endpoint("grpc", "h", 1234)),
    ("grpc://h", None, Endpoint("grpc", "h", 8001)),
    ("https://h", None, Endpoint("http", "h", 8000, ssl=True)),
])
def test_parse_url(url, protocol, expected):
    assert parse_url(url, protocol) == expected


@pytest.mark.parametrize("url", ["ftp://h:1", "http://", "http://h:99999"])
def test_bad_urls_name_the_flag(url):
    with pytest.raises(ConfigError, match="--server"):
        parse_url(url)


def test_server_errors_become_the_runtime_error_of_the_file():
    error = RequestError("ImageDecodeError: <12 bytes>: not a recognised image", transport=False)
    mapped = error.as_error("photos/a.jpg", "<12 bytes>")
    assert isinstance(mapped, ImageDecodeError)
    assert str(mapped) == "photos/a.jpg: not a recognised image"
    unknown = RequestError("model busy", transport=False).as_error("b.jpg")
    assert isinstance(unknown, ServerError) and str(unknown) == "b.jpg: model busy"
    lost = RequestError("ClientConnectorError: refused", transport=True).as_error("c.jpg")
    assert isinstance(lost, ServerError) and "did not answer" in str(lost)
