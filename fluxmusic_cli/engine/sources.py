"""Where each component comes from: a registered hub entry, any hub repo id, or a local path.

A `ComponentRef` is only a description; `fluxmusic_cli.engine.hub.ensure_local` turns it into
files on disk (downloading when allowed). Its `identity` names the source in cache keys and in
generation records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fluxmusic_cli.engine import registry
from fluxmusic_cli.errors import UsageError

Kind = Literal["transformer", "t5", "clap", "audioldm2"]


@dataclass(frozen=True)
class ComponentRef:
    """One component's source: a local `path`, a hub component, or a released `variant`."""

    kind: Kind
    hub: registry.HubComponent | None = None
    path: Path | None = None
    variant: registry.Variant | None = None  # for transformer refs given by variant name

    @property
    def identity(self) -> str:
        if self.path is not None:
            return f"local:{self.path}"
        if self.variant is not None:
            return f"hub:{self.variant.repo_id}/{self.variant.filename}@main"
        assert self.hub is not None
        return f"hub:{self.hub.repo_id}@{self.hub.revision}"

    @property
    def revision(self) -> str:
        if self.hub is not None:
            return self.hub.revision
        return "main" if self.variant is not None else "local"


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith((".", "/", "~"))
        or value.endswith((".pt", ".pth", ".safetensors", ".bin"))
        or Path(value).expanduser().exists()
    )


def parse_ref(kind: Kind, value: str, *, revision: str | None = None) -> ComponentRef:
    """Turn what a user typed (`small`, `laion/larger_clap_music`, `./my-t5`) into a ref.

    A value that names an existing path, or looks like one, is a local path (it must exist);
    anything else is a registered name or a hub repo id.
    """
    value = value.strip()
    if not value:
        raise UsageError(f"Empty source given for the {kind} component.")
    if _looks_like_path(value):
        path = Path(value).expanduser().resolve()
        if not path.exists():
            raise UsageError(f"No such file or directory for the {kind} component: {path}")
        return ComponentRef(kind=kind, path=path)

    hub: registry.HubComponent
    if kind == "transformer":
        variant = registry.get_variant(value)
        return ComponentRef(kind=kind, variant=variant)
    if kind == "t5":
        found = registry.get_t5_source(value)
        hub = found or dataclasses.replace(
            registry.T5_SOURCES[registry.DEFAULT_T5], key=value, repo_id=value, aliases=()
        )
    elif kind == "clap":
        hub = (
            registry.CLAP
            if value == registry.CLAP.repo_id
            else dataclasses.replace(registry.CLAP, key=value, repo_id=value)
        )
    elif kind == "audioldm2":
        hub = (
            registry.AUDIOLDM2
            if value == registry.AUDIOLDM2.repo_id
            else dataclasses.replace(registry.AUDIOLDM2, key=value, repo_id=value)
        )
    else:  # pragma: no cover - Kind is closed
        raise UsageError(f"Unknown component kind {kind!r}.")
    if "/" not in hub.repo_id:
        raise UsageError(
            f"{value!r} is neither a local path nor a hub repo id (owner/name) for the {kind} "
            "component."
        )
    if revision:
        hub = dataclasses.replace(hub, revision=revision)
    return ComponentRef(kind=kind, hub=hub)


DEFAULT_SOURCES: dict[Kind, str] = {
    "transformer": registry.DEFAULT_VARIANT,
    "t5": registry.DEFAULT_T5,
    "clap": registry.CLAP.repo_id,
    "audioldm2": registry.AUDIOLDM2.repo_id,
}
