"""Where a LanceDB source lives: a local folder or an object store, and the storage options
Lance reads it with.

An ``s3://`` database takes the S3 options every remote root of fedquery takes (checked by
``settings.s3_options``) and hands Lance their object-store names (``endpoint_url`` ->
``aws_endpoint``, ``key`` -> ``aws_access_key_id``, ...). Other object stores Lance supports
(``gs://``, ...) take Lance's own storage option names as they are; an ``az://`` database takes
the Azure options of ``az://`` files roots (``account_name``, ``account_key``, ``sas_token``,
``endpoint_url``, e.g. Azurite's) and any of Lance's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fedquery.errors import CatalogError

S3_SCHEMES = ("s3", "s3a")
# the S3 options Lance has no use for: its object store times each request as a whole
NOT_FOR_LANCE = {"read_timeout": "Lance times each request as a whole: use request_timeout",
                 "min_read_speed": "Lance times each request as a whole: use request_timeout"}


def scheme(uri: str) -> str:
    """``s3``, ``gs``, ``az``... for an object store URI; ``""`` for a local path."""
    if "://" not in uri:
        return ""
    found = urlsplit(uri).scheme.lower()
    return "" if found == "file" else found


def check_options(uri: str, options: Mapping[str, Any], where: str) -> None:
    """Refuse S3 options Lance cannot apply (the S3 vocabulary itself is checked by the
    caller); other stores' options are Lance's own names, each a single value."""
    if scheme(uri) in S3_SCHEMES:
        for key, reason in NOT_FOR_LANCE.items():
            if key in options:
                raise CatalogError(f"{where}.options.{key}: not used for a lancedb source; {reason}")


def storage_options(uri: str, options: Mapping[str, Any]) -> dict[str, str]:
    """The options Lance opens ``uri`` with."""
    if scheme(uri) == "az":
        return _azure(options)
    if scheme(uri) not in S3_SCHEMES:
        return {str(k): _text(v) for k, v in options.items()}
    import os

    out = {"aws_region": str(options.get("region") or os.environ.get("AWS_REGION")
                              or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")}
    endpoint = options.get("endpoint_url")
    if endpoint:
        out["aws_endpoint"] = str(endpoint)
        if str(endpoint).lower().startswith("http://"):
            out["allow_http"] = "true"
    names = {"key": "aws_access_key_id", "secret": "aws_secret_access_key",
             "token": "aws_session_token"}
    out.update({lance: str(options[ours]) for ours, lance in names.items() if options.get(ours)})
    if _flag(options.get("anonymous")):
        out["aws_skip_signature"] = "true"
    if options.get("connect_timeout") is not None:
        out["connect_timeout"] = f"{float(options['connect_timeout'])}s"
    if options.get("request_timeout") is not None:
        out["timeout"] = f"{float(options['request_timeout'])}s"
    if options.get("max_attempts") is not None:
        out["client_max_retries"] = str(max(0, int(options["max_attempts"]) - 1))
    return out


def _azure(options: Mapping[str, Any]) -> dict[str, str]:
    """Lance's names for the Azure options (its object store reads the account from the
    endpoint's path when the host is not Azure's, as with Azurite)."""
    out = {str(k): _text(v) for k, v in options.items() if k != "endpoint_url"}
    if options.get("sas_token"):
        out["azure_storage_sas_token"] = str(out.pop("sas_token"))
    endpoint = options.get("endpoint_url")
    if endpoint:
        account = options.get("account_name")
        path_style = "127.0.0.1" in str(endpoint) or "localhost" in str(endpoint)
        base = str(endpoint).rstrip("/")
        out["azure_storage_endpoint"] = f"{base}/{account}" if path_style and account else base
        if base.lower().startswith("http://"):
            out["allow_http"] = "true"
    return out


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"))


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
