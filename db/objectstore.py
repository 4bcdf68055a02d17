"""Object-store access outside LanceDB (``pyarrow.fs``): photo sources and the writer lease.

Credentials, region and endpoint come from ``storage_options`` (LanceDB's keys, e.g.
``aws_endpoint``, ``aws_access_key_id``, ``allow_http``) or else from the usual ``AWS_*``
environment variables.
"""

from __future__ import annotations

import os
from typing import Any

_OPTION_KEYS = {
    "access_key": ("aws_access_key_id", "access_key_id"),
    "secret_key": ("aws_secret_access_key", "secret_access_key"),
    "session_token": ("aws_session_token", "session_token", "token"),
    "region": ("aws_region", "region", "aws_default_region"),
    "endpoint_override": ("aws_endpoint", "aws_endpoint_url", "endpoint", "endpoint_url"),
}
"""pyarrow ``S3FileSystem`` argument -> the ``storage_options`` keys LanceDB accepts for it."""


def _s3_settings(storage_options: dict[str, str] | None) -> tuple[dict[str, Any], str, bool]:
    """What LanceDB-style ``storage_options`` say, for any S3 client: the values they set by
    ``S3FileSystem`` argument (credentials, region; not the endpoint), the endpoint (else
    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; "" when none), and ``allow_http``.

    >>> values, _, allow_http = _s3_settings({"AWS_REGION": "eu-west-1", "allow_http": "true"})
    >>> values, allow_http
    ({'region': 'eu-west-1'}, True)
    """
    options = {k.lower(): v for k, v in (storage_options or {}).items()}
    values: dict[str, Any] = {}
    for argument, keys in _OPTION_KEYS.items():
        value = next((options[k] for k in keys if options.get(k)), None)
        if value is not None:
            values[argument] = value
    endpoint = values.pop("endpoint_override", None) or os.environ.get("AWS_ENDPOINT_URL_S3")
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL", "")
    allow_http = str(options.get("allow_http", options.get("aws_allow_http", ""))).lower()
    return values, endpoint, allow_http == "true"


def s3_filesystem(storage_options: dict[str, str] | None = None) -> Any:
    """A ``pyarrow.fs.S3FileSystem`` from LanceDB-style ``storage_options``, else the env.

    Unset values fall back to the AWS SDK's usual sources (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, profiles, instance roles).
    An ``http://`` endpoint (or ``allow_http``) talks plain HTTP, for a local S3 server.

    >>> s3_filesystem({"aws_endpoint": "http://127.0.0.1:9", "aws_region": "us-east-1",
    ...                "aws_access_key_id": "k", "aws_secret_access_key": "s"}).region
    'us-east-1'
    """
    import pyarrow.fs as pafs

    kwargs: dict[str, Any]
    kwargs, endpoint, allow_http = _s3_settings(storage_options)
    if endpoint.startswith("http://") or allow_http:
        kwargs["scheme"] = "http"
    if endpoint:
        kwargs["endpoint_override"] = endpoint.split("://", 1)[-1]
    return pafs.S3FileSystem(**kwargs)


def filesystem_and_path(uri: str, storage_options: dict[str, str] | None = None) -> tuple[Any, str]:
    """The ``pyarrow.fs`` filesystem for an object-store ``uri`` and the path in it.

    >>> filesystem_and_path("s3://bucket/db/", {"aws_region": "us-east-1"})[1]
    'bucket/db'
    """
    import pyarrow.fs as pafs

    scheme, rest = uri.split("://", 1)
    if scheme in ("s3", "s3a"):
        return s3_filesystem(storage_options), rest.rstrip("/")
    return pafs.FileSystem.from_uri(uri)[0], rest.rstrip("/")


def s3_client(storage_options: dict[str, str] | None = None) -> Any:
    """A boto3 S3 client from the same ``storage_options`` (else the environment), for what
    ``pyarrow.fs`` cannot do: a paginated listing. Raises ``ImportError`` without boto3
    (``pip install "pixsearch[s3]"``)."""
    import boto3

    values, endpoint, allow_http = _s3_settings(storage_options)
    if endpoint and "://" not in endpoint:
        endpoint = ("http://" if allow_http else "https://") + endpoint
    region = (
        values.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=region or None,
        aws_access_key_id=values.get("access_key"),
        aws_secret_access_key=values.get("secret_key"),
        aws_session_token=values.get("session_token"),
    )
