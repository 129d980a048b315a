"""Where the lake's files live: a local folder or an object store, opened by URL.

The backend registry (``config.BACKENDS["lake"]``) maps a scheme to one of these classes.
``from_url`` returns a ``Storage``: the root the Delta tables sit under and the
``storage_options`` delta-rs needs to reach it. Credentials are never written in tarmac.yaml:
they come from the environment, as the cloud tools set them (``AWS_*``, ``GOOGLE_*``,
``AZURE_*``), and any other delta-rs option from ``TARMAC_STORAGE_<OPTION>`` (for example
``TARMAC_STORAGE_AWS_ENDPOINT_URL=http://127.0.0.1:9000`` for MinIO), which wins over the
provider's own variable.

Example::

    ObjectStorage.from_url("s3://bucket/lake", environ={"AWS_REGION": "eu-west-1"})
    # Storage(root='s3://bucket/lake', options={'aws_region': 'eu-west-1'})
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tarmac.config import url_scheme

OPTION_PREFIX = "TARMAC_STORAGE_"

#: scheme -> environment variables passed through as delta-rs storage options (lowercased)
_PROVIDER_ENV: dict[str, tuple[str, ...]] = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
           "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP",
           "AWS_S3_LOCKING_PROVIDER", "AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_CONDITIONAL_PUT"),
    "gs": ("GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_KEY",
           "GOOGLE_APPLICATION_CREDENTIALS"),
    "az": ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
           "AZURE_STORAGE_CLIENT_ID", "AZURE_STORAGE_CLIENT_SECRET", "AZURE_STORAGE_TENANT_ID",
           "AZURE_STORAGE_USE_EMULATOR"),
}
_PROVIDER_ENV["abfss"] = _PROVIDER_ENV["az"]


@dataclass(frozen=True)
class Storage:
    """An opened lake location: the tables' root and the options delta-rs reaches it with."""

    root: str
    options: dict[str, str] | None = field(default=None, repr=False)  # may hold secrets
    local: bool = True


class LocalStorage:
    """A local or mounted folder (a bare path or ``file:///abs/path``); needs no options."""

    @classmethod
    def from_url(cls, url: str, *, environ: Mapping[str, str] | None = None) -> Storage:
        return Storage(url.removeprefix("file://").rstrip("/") or "/", None, local=True)


class ObjectStorage:
    """An object store (``s3://``, ``gs://``, ``az://``, ``abfss://``): delta-rs talks to it;
    its storage options come from the environment (see the module docstring)."""

    @classmethod
    def from_url(cls, url: str, *, environ: Mapping[str, str] | None = None) -> Storage:
        options = storage_options(url_scheme(url), os.environ if environ is None else environ)
        return Storage(url.rstrip("/"), options or None, local=False)


def storage_options(scheme: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The delta-rs storage options for ``scheme`` found in ``environ``: the provider's own
    variables, then every ``TARMAC_STORAGE_<OPTION>`` (lowercased), which take precedence."""
    options = {name.lower(): environ[name] for name in _PROVIDER_ENV.get(scheme, ())
               if environ.get(name)}
    if "aws_region" not in options and "aws_default_region" in options:
        options["aws_region"] = options["aws_default_region"]
    options.pop("aws_default_region", None)
    for name, value in environ.items():
        if name.startswith(OPTION_PREFIX) and len(name) > len(OPTION_PREFIX):
            options[name[len(OPTION_PREFIX):].lower()] = value
    return options
