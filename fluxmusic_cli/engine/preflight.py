"""Before any download: what will be fetched, how big, whether it fits, and who may fetch it.

The plan uses the registry's published sizes; online, one metadata request per repo that still
needs files refines them to exact sizes and tells whether a gated repo is open to the current
token. Fully cached components cost no request at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fluxmusic_cli.engine import cache, conversion, hub, paths
from fluxmusic_cli.engine.placement import component_bytes
from fluxmusic_cli.engine.registry import DECODER_PARAMS, PARAMS_BY_KIND
from fluxmusic_cli.engine.sources import ComponentRef
from fluxmusic_cli.errors import CheckpointError, ModelMissingError

Access = str  # "yes", "no", "unknown", "not needed"
LABELS = {"t5": "T5 encoder", "clap": "CLAP", "audioldm2": "VAE + vocoder"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Which of `placement.component_bytes`'s entries prices a component of each kind.
_PRICED_AS = {"transformer": "transformer", "t5": "t5", "clap": "clap", "audioldm2": "decoder"}


@dataclass
class PlannedComponent:
    """One component of the plan."""

    kind: str
    label: str
    source: str
    files: tuple[str, ...]
    size_bytes: int
    size_exact: bool
    cached: bool
    fetch_bytes: int
    convert_bytes: int
    gated: bool
    access: Access
    parts: dict[str, int]  # parameters each part holds in memory, as `component_params` counts
    where: str | None = None
    command: str | None = None  # the `fluxmusic download` command that fetches it

    @property
    def params(self) -> int:
        return sum(self.parts.values())

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "parts"}
        out["params"] = self.params
        return out


@dataclass(frozen=True)
class DiskNeed:
    """Free space on one filesystem against what the plan writes there."""

    path: Path
    free_bytes: int
    needed_bytes: int

    @property
    def enough(self) -> bool:
        return self.free_bytes >= self.needed_bytes


@dataclass
class DownloadPlan:
    components: list[PlannedComponent]
    offline: bool
    disks: list[DiskNeed] = field(default_factory=list)

    @property
    def fetch_bytes(self) -> int:
        return sum(c.fetch_bytes for c in self.components)

    @property
    def convert_bytes(self) -> int:
        return sum(c.convert_bytes for c in self.components)

    @property
    def nothing_to_do(self) -> bool:
        return all(c.cached for c in self.components)

    def weight_bytes(self, dtype: str = "fp32") -> dict[str, int]:
        """The planned components' weights in a run of `dtype`, priced by the store's own
        formula (`placement.component_bytes`); a component not in the plan costs nothing."""
        counts = {"transformer": 0, "t5": 0, "clap": 0, "vae": 0, "vocoder": 0}
        for c in self.components:
            counts.update(c.parts)
        return component_bytes(counts.pop("transformer"), dtype, params=counts)

    def memory_bytes(self, dtype: str = "fp32") -> int:
        """Weights of the whole setup held at once, in `dtype` (activations come on top)."""
        return self.weight_bytes(dtype)["total"]

    def peak_memory_bytes(self, dtype: str = "fp32") -> int:
        """Weights of the largest component: the floor when components load one at a time."""
        priced = self.weight_bytes(dtype)
        return max((priced[_PRICED_AS[c.kind]] for c in self.components), default=0)

    def check(self) -> None:
        """Refuse to start when offline with files missing, a gated repo is closed to the token,
        or the disk is too small."""
        missing = [c for c in self.components if c.fetch_bytes and not c.cached]
        if self.offline and missing:
            names = ", ".join(f"{c.label} ({c.source})" for c in missing)
            commands = " and ".join(f"`{c.command}`" for c in missing if c.command)
            raise ModelMissingError(
                f"HF_HUB_OFFLINE is set and these are not on disk: {names}.",
                hint=f"Unset HF_HUB_OFFLINE and run {commands}, or give local paths instead.",
            )
        for c in self.components:
            if c.access == "no" and not c.cached:
                raise ModelMissingError(
                    f"The hub repo {c.source} is gated and the current token has no access to it.",
                    hint=(
                        f"Accept its licence on {hub.hub_page(c.source)} while logged in, then set "
                        "HF_TOKEN or pass --token (or use a non-gated source)."
                    ),
                )
        for disk in self.disks:
            if not disk.enough:
                raise ModelMissingError(
                    f"Not enough free disk space in {disk.path}: {human_bytes(disk.needed_bytes)} "
                    f"needed, {human_bytes(disk.free_bytes)} free.",
                    hint=(
                        "Free some space, or move the caches with HF_HUB_CACHE (downloads) and "
                        "FLUXMUSIC_CACHE (converted checkpoints)."
                    ),
                )

    def to_dict(self) -> dict[str, object]:
        return {
            "components": [c.to_dict() for c in self.components],
            "offline": self.offline,
            "fetch_bytes": self.fetch_bytes,
            "convert_bytes": self.convert_bytes,
            "disks": [
                {"path": str(d.path), "free_bytes": d.free_bytes, "needed_bytes": d.needed_bytes}
                for d in self.disks
            ],
            "memory_bytes": {dt: self.memory_bytes(dt) for dt in ("fp32", "bf16")},
            "peak_memory_bytes": {dt: self.peak_memory_bytes(dt) for dt in ("fp32", "bf16")},
        }


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _disk_needs(hub_bytes: int, tool_bytes: int) -> list[DiskNeed]:
    hub_root, tool_root = hub.hub_cache_dir(), paths.cache_dir()
    hub_dir, tool_dir = _existing_parent(hub_root), _existing_parent(tool_root)
    if os.stat(hub_dir).st_dev == os.stat(tool_dir).st_dev:
        return [DiskNeed(hub_root, shutil.disk_usage(hub_dir).free, hub_bytes + tool_bytes)]
    return [
        DiskNeed(hub_root, shutil.disk_usage(hub_dir).free, hub_bytes),
        DiskNeed(tool_root, shutil.disk_usage(tool_dir).free, tool_bytes),
    ]


def safetensors_params(path: Path) -> int | None:
    """Parameter count read from a safetensors header (no tensor data is read)."""
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for key, info in header.items():
        if key != "__metadata__":
            count = 1
            for dim in info.get("shape", []):
                count *= int(dim)
            total += count
    return total


def component_params(ref: ComponentRef) -> dict[str, int]:
    """Parameters each part of `ref` holds in memory once loaded: one count for the pre-flight
    plan and the store's memory policy alike.

    A hub source has the registry's count (a released variant its published one). A local
    source is counted from its own weight files, as it may be any size: the transformer file,
    T5's model folder, the CLAP folder (its audio tower, which does not load, counts too),
    the decoder's `vae/` and `vocoder/`.
    """
    if ref.path is None:
        if ref.variant is not None:
            return {"transformer": ref.variant.params}
        if ref.kind == "audioldm2":
            return dict(DECODER_PARAMS)
        return {ref.kind: PARAMS_BY_KIND[ref.kind]}
    path = ref.path
    if ref.kind == "audioldm2":
        return {part: _weights_params(path / part, 4) for part in DECODER_PARAMS}
    if ref.kind == "t5":
        from fluxmusic_cli.engine.encoders import t5_dirs

        with contextlib.suppress(CheckpointError):
            path = t5_dirs(path)[0]  # SD3's whole repo holds much more than its T5
    # Pickles without a header: released transformers and CLAP hold fp32, T5 copies bf16.
    return {ref.kind: _weights_params(path, 2 if ref.kind == "t5" else 4)}


def _weights_params(path: Path, bytes_per_param: int) -> int:
    """Parameters in a weights file or a folder of them: safetensors headers where there are
    any (a repo may ship both formats), else the pickles' size over `bytes_per_param`."""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = [f for f in path.rglob("*") if f.suffix in _WEIGHT_SUFFIXES and f.is_file()]
    else:
        return 0
    tensors = [f for f in files if f.suffix == ".safetensors"]
    total = 0
    for f in tensors or files:
        counted = safetensors_params(f) if f.suffix == ".safetensors" else None
        total += counted if counted is not None else f.stat().st_size // bytes_per_param
    return total


@dataclass
class _RemoteInfo:
    sizes: dict[str, int]
    gated: bool
    access: Access


def _remote_info(repo_id: str, revision: str, token: str | None, gated: bool) -> _RemoteInfo:
    """Exact file sizes, gating and access for one repo; registry values on network trouble."""
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf

    api = HfApi(endpoint=hub.hub_endpoint())
    tok = hub.resolve_token(token)
    sizes: dict[str, int] = {}
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True, token=tok)
    except (hf.RepositoryNotFoundError, hf.RevisionNotFoundError) as exc:
        if isinstance(exc, hf.GatedRepoError):
            return _RemoteInfo({}, True, "no")
        raise ModelMissingError(
            f"The hub repo {repo_id} (revision {revision}) was not found, or it is private and "
            "the current token cannot see it.",
            hint="Check the repo id and revision; for a private repo set HF_TOKEN or pass --token.",
        ) from exc
    except (httpx2.HTTPError, hf.HfHubHTTPError, OSError):
        return _RemoteInfo({}, gated, "unknown")
    for sib in info.siblings or ():
        size = sib.lfs.size if sib.lfs is not None else sib.size
        if size is not None:
            sizes[sib.rfilename] = int(size)
    gated = bool(info.gated)
    if not gated:
        return _RemoteInfo(sizes, False, "not needed")
    try:
        api.auth_check(repo_id, token=tok)
    except (hf.GatedRepoError, hf.RepositoryNotFoundError):
        return _RemoteInfo(sizes, True, "no")
    except hf.HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        return _RemoteInfo(sizes, True, "no" if status in (401, 403) else "unknown")
    except (httpx2.HTTPError, OSError):
        return _RemoteInfo(sizes, True, "unknown")
    return _RemoteInfo(sizes, True, "yes")


def _plan_hub(ref: ComponentRef, token: str | None, offline: bool) -> PlannedComponent:
    assert ref.hub is not None
    comp = ref.hub
    state = hub.local_state(comp.repo_id, comp.revision, comp.files)
    present_bytes = sum(p.stat().st_size for p in state.present.values())
    size, exact = comp.size_bytes, False
    fetch = 0 if state.complete else max(comp.size_bytes - present_bytes, 0)
    gated, access = comp.gated, ("unknown" if comp.gated else "not needed")
    files = comp.files
    if not state.complete and not offline:
        remote = _remote_info(comp.repo_id, comp.revision, token, comp.gated)
        gated, access = remote.gated, remote.access
        if remote.sizes:
            chosen, fetch = [], 0
            for spec in hub.file_specs(comp.files):
                name = next((c for c in spec.candidates if c in remote.sizes), None)
                if name is None:
                    if spec.optional:
                        continue
                    raise ModelMissingError(
                        f"The hub repo {comp.repo_id} (revision {comp.revision}) has no file "
                        f"{' or '.join(spec.candidates)}.",
                        hint="Check the repo id and revision, or give a local directory instead.",
                    )
                chosen.append(name)
                if spec.name not in state.present:
                    fetch += remote.sizes[name]
            files, size, exact = tuple(chosen), sum(remote.sizes[n] for n in chosen), True
    return PlannedComponent(
        kind=ref.kind,
        label=LABELS[ref.kind],
        source=comp.repo_id,
        files=files,
        size_bytes=size,
        size_exact=exact,
        cached=state.complete,
        fetch_bytes=fetch,
        convert_bytes=0,
        gated=gated,
        access="not needed" if state.complete else access,
        parts=component_params(ref),
        where=str(state.snapshot) if state.complete else None,
        command=hub.download_command(ref),
    )


def _plan_variant(ref: ComponentRef, token: str | None, offline: bool) -> PlannedComponent:
    assert ref.variant is not None
    v = ref.variant
    converted = conversion.converted_checkpoints(v)
    state = hub.local_state(v.repo_id, "main", (v.filename,))
    size, exact, access = v.size_bytes, False, "not needed"
    if not converted and not state.complete and not offline:
        remote = _remote_info(v.repo_id, "main", token, False)
        access = remote.access
        if v.filename in remote.sizes:
            size, exact = remote.sizes[v.filename], True
    where = converted[0].path if converted else state.present.get(v.filename)
    return PlannedComponent(
        kind="transformer",
        label=f"FluxMusic {v.name}",
        source=v.repo_id,
        files=(v.filename,),
        size_bytes=size,
        size_exact=exact,
        cached=bool(converted),
        fetch_bytes=0 if converted or state.complete else size,
        convert_bytes=0 if converted else size,
        gated=False,
        access=access,
        parts=component_params(ref),
        where=str(where) if where else None,
        command=hub.download_command(ref),
    )


def plan_download(
    refs: Iterable[ComponentRef], *, token: str | None = None, offline: bool | None = None
) -> DownloadPlan:
    """What getting `refs` onto disk involves; no file is downloaded."""
    off = hub.offline_mode() if offline is None else offline
    planned: list[PlannedComponent] = []
    for ref in refs:
        if ref.path is not None:
            path = hub.validate_local(ref)
            planned.append(
                PlannedComponent(
                    kind=ref.kind,
                    label=f"local {ref.kind}",
                    source=str(path),
                    files=(),
                    size_bytes=cache.tree_size(path),
                    size_exact=True,
                    cached=True,
                    fetch_bytes=0,
                    convert_bytes=0,
                    gated=False,
                    access="not needed",
                    parts=component_params(ref),
                    where=str(path),
                )
            )
        elif ref.variant is not None:
            planned.append(_plan_variant(ref, token, off))
        else:
            planned.append(_plan_hub(ref, token, off))
    plan = DownloadPlan(planned, off)
    plan.disks = _disk_needs(plan.fetch_bytes, plan.convert_bytes)
    return plan
