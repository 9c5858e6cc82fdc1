"""The providers a pool may name (`provider: NAME` in cluster.yaml): one registry.

The built-in ones are listed here; a package adds its own (or replaces one) by declaring it in the
`titan_runtime.providers` entry-point group, e.g. in its pyproject.toml:

    [project.entry-points."titan_runtime.providers"]
    mycloud = "mycloud_titan:MyCloudProvider"

The class is a `Provider` (base.py); it is imported only when a cluster file names it.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from titan_runtime.providers.base import Provider

GROUP = "titan_runtime.providers"
BUILT_IN = {
    "local": "titan_runtime.providers.local:LocalProvider",
    "ssh": "titan_runtime.providers.ssh:SshPoolProvider",
    "webhook": "titan_runtime.providers.webhook:WebhookProvider",
}


class UnknownProvider(LookupError):
    """A name no provider has, or one whose class cannot be loaded; the message says which."""


@cache
def available() -> dict[str, str]:
    """Name -> "module:Class" of every provider: the built-in ones and the installed packages'."""
    found = dict(BUILT_IN)
    for point in entry_points(group=GROUP):
        found[point.name] = point.value
    return found


def names() -> list[str]:
    return sorted(available())


def provider_class(name: str) -> type[Provider]:
    """The class of provider `name`, imported now."""
    target = available().get(name)
    if target is None:
        raise UnknownProvider(f"expected one of {', '.join(names())}, got {name!r}")
    module, _, attribute = target.partition(":")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise UnknownProvider(f"provider {name} ({target}) cannot be loaded: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, Provider)):
        raise UnknownProvider(f"provider {name} ({target}) is not a titan_runtime Provider class")
    return found
