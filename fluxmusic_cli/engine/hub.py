"""Getting weights onto disk: hub downloads, the one-time `.pt` conversion, the cache.

Hub files go into huggingface_hub's own cache, so whatever another tool already fetched is
reused. The tool's cache (`paths.cache_dir()`) only holds what it derives: converted
checkpoints and stored embeddings.

Cache first: when every file a component needs is already in the hub cache, no request is
made (generation then works on a plane); `refresh=True` asks the hub for a newer revision.

huggingface_hub reads its environment variables once, at import; this module reads
`HF_HUB_OFFLINE`, `HF_HUB_CACHE`/`HF_HOME`, `HF_ENDPOINT` and `HF_TOKEN` at call time and passes
them explicitly, so a value set after import still counts. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fluxmusic_cli import atomic, notices
from fluxmusic_cli.engine import paths, registry
from fluxmusic_cli.engine.sources import ComponentRef
from fluxmusic_cli.errors import ModelMissingError, OutputError, UsageError

# (label, bytes done, bytes total or None), called as a file downloads.
ProgressCallback = Callable[[str, int, "int | None"], None]

_TRUE = {"1", "on", "yes", "true"}
_HEX = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

# A repo may publish weights under the older name only (e.g. a CLAP repo with pytorch_model.bin).
_ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "model.safetensors": ("pytorch_model.bin",),
    "diffusion_pytorch_model.safetensors": ("diffusion_pytorch_model.bin",),
}
# Tokenizer side files that not every repo ships; the tokenizer loads without them.
_OPTIONAL = {"tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"}

_WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin")


# -- environment, read at call time ---------------------------------------------------------


def offline_mode() -> bool:
    """True when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder as its variables say now (HF_HUB_CACHE, HF_HOME)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_endpoint() -> str | None:
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def hub_page(repo_id: str) -> str:
    return f"{hub_endpoint() or 'https://huggingface.co'}/{repo_id}"


def resolve_token(token: str | None) -> str | None:
    """The token to send: the given one, else HF_TOKEN, else (None) the one saved by login."""
    # None lets huggingface_hub fall back to the token saved by `hf auth login`.
    return token or os.environ.get("HF_TOKEN") or None


def _offline(offline: bool | None) -> bool:
    return offline_mode() if offline is None else offline


# -- which files a component needs ----------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    """One needed file: the name to try first, names that may stand in for it, optionality."""

    name: str
    alternatives: tuple[str, ...] = ()
    optional: bool = False

    @property
    def candidates(self) -> tuple[str, ...]:
        return (self.name, *self.alternatives)


def file_specs(files: Iterable[str]) -> list[FileSpec]:
    specs = []
    for name in files:
        folder, _, base = name.rpartition("/")
        prefix = f"{folder}/" if folder else ""
        alts = tuple(prefix + alt for alt in _ALTERNATIVES.get(base, ()))
        specs.append(FileSpec(name, alts, optional=base in _OPTIONAL))
    return specs


def download_command(ref: ComponentRef) -> str:
    """The `fluxmusic download` command that fetches exactly this component."""
    if ref.variant is not None:
        return f"fluxmusic download {ref.variant.name}"
    assert ref.hub is not None
    flag = {"t5": "--t5", "clap": "--clap", "audioldm2": "--vae-vocoder"}[ref.kind]
    name = {"t5": "t5", "clap": "clap", "audioldm2": "vae-vocoder"}[ref.kind]
    default = {
        "t5": registry.T5_SOURCES[registry.DEFAULT_T5],
        "clap": registry.CLAP,
        "audioldm2": registry.AUDIOLDM2,
    }[ref.kind]
    cmd = f"fluxmusic download {name}"
    if ref.hub.repo_id != default.repo_id:
        source = ref.hub.key if ref.hub.key in registry.T5_SOURCES else ref.hub.repo_id
        cmd += f" {flag} {source}"
    return cmd


def describe(ref: ComponentRef) -> str:
    """A short human name for a component, for messages."""
    if ref.path is not None:
        return f"{ref.kind} at {ref.path}"
    if ref.variant is not None:
        return f"FluxMusic {ref.variant.name} ({ref.variant.repo_id}/{ref.variant.filename})"
    assert ref.hub is not None
    return f"{ref.hub.description} ({ref.hub.repo_id})"


# -- the hub cache, without network ---------------------------------------------------------


def repo_cache_dir(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def _cached_commit(repo_dir: Path, revision: str) -> str | None:
    if _COMMIT.match(revision):
        return revision
    ref_file = repo_dir / "refs" / revision
    if ref_file.is_file():
        return ref_file.read_text().strip() or None
    return None


def resolved_commit(ref: ComponentRef) -> str | None:
    """The commit a hub component's revision points to in the cache now, without network
    (None when it is not downloaded): what identifies its weights, e.g. in cache keys."""
    if ref.hub is None:
        return None
    repo_dir = repo_cache_dir(ref.hub.repo_id)
    commit = _cached_commit(repo_dir, ref.hub.revision)
    if commit is None or not (repo_dir / "snapshots" / commit).is_dir():
        return None
    return commit


@dataclass(frozen=True)
class LocalState:
    """What the hub cache holds for one repo revision, found without network."""

    snapshot: Path | None
    present: dict[str, Path]  # needed name -> cached file actually used (maybe an alternative)
    missing: tuple[FileSpec, ...]

    @property
    def complete(self) -> bool:
        return self.snapshot is not None and not self.missing


def local_state(repo_id: str, revision: str, files: Iterable[str]) -> LocalState:
    specs = file_specs(files)
    repo_dir = repo_cache_dir(repo_id)
    commit = _cached_commit(repo_dir, revision)
    snapshot = repo_dir / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        return LocalState(None, {}, tuple(specs))
    no_exist = repo_dir / ".no_exist" / snapshot.name
    present: dict[str, Path] = {}
    missing: list[FileSpec] = []
    for spec in specs:
        found = next((snapshot / c for c in spec.candidates if (snapshot / c).is_file()), None)
        if found is not None:
            present[spec.name] = found
        elif not (spec.optional and (no_exist / spec.name).exists()):
            missing.append(spec)
    return LocalState(snapshot, present, tuple(missing))


def _known_absent(repo_id: str, commit: str | None, name: str) -> bool:
    return bool(commit) and (repo_cache_dir(repo_id) / ".no_exist" / commit / name).exists()


# -- downloading ----------------------------------------------------------------------------


def _tqdm_class(progress: ProgressCallback, label: str):
    """A huggingface_hub progress-bar class that reports to `progress` instead of drawing."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _Report(hf_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            progress(label, self._done, kwargs.get("total"))

        def update(self, n=1):
            self._done += int(n or 0)
            progress(label, self._done, self.total)
            return super().update(n)

    return _Report


def _commit_of(path: str) -> str | None:
    parts = Path(path).parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def _download_file(
    repo_id: str,
    filename: str,
    *,
    revision: str,
    token: str | None,
    progress: ProgressCallback | None,
) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(
        repo_id,
        filename,
        revision=revision,
        cache_dir=str(hub_cache_dir()),
        token=token,
        endpoint=hub_endpoint(),
        tqdm_class=_tqdm_class(progress, f"{repo_id}/{filename}") if progress else None,
    )


def _fetch_files(
    ref: ComponentRef,
    repo_id: str,
    revision: str,
    files: tuple[str, ...],
    *,
    token: str | None,
    offline: bool,
    refresh: bool,
    progress: ProgressCallback | None,
) -> Path:
    state = local_state(repo_id, revision, files)
    if state.complete and (not refresh or offline):
        assert state.snapshot is not None
        return state.snapshot
    if offline:
        missing = [s.name for s in state.missing]
        what = (
            "is not in the local cache"
            if len(missing) == len(files)
            else f"is only partly in the local cache (missing: {', '.join(missing)})"
        )
        raise ModelMissingError(
            f"{describe(ref)} {what} and HF_HUB_OFFLINE is set.",
            hint=f"Fetch it while online with `{download_command(ref)}`, or point to a local copy.",
        )
    token = resolve_token(token)
    commit: str | None = None
    snapshot: Path | None = None
    for spec in file_specs(files):
        got: str | None = None
        for name in spec.candidates:
            if _known_absent(repo_id, commit, name):
                continue
            try:
                with _translated(ref, repo_id, name):
                    got = _download_file(
                        repo_id, name, revision=commit or revision, token=token, progress=progress
                    )
            except _EntryMissing:
                continue
            # Pin every later file to the commit this one resolved to: one consistent snapshot.
            commit = commit or _commit_of(got)
            snapshot = snapshot or _snapshot_root(Path(got), name)
            break
        if got is None:
            if spec.optional:
                continue
            tried = " or ".join(spec.candidates)
            raise ModelMissingError(
                f"The hub repo {repo_id} (revision {revision}) has no file {tried}.",
                hint="Check the repo id and revision, or give a local directory instead.",
            )
    if snapshot is None:
        raise ModelMissingError(f"None of the files of {describe(ref)} exist on the hub.")
    return snapshot


def _snapshot_root(file_path: Path, name: str) -> Path:
    root = file_path
    for _ in name.split("/"):
        root = root.parent
    return root


class _EntryMissing(Exception):
    """A file is absent from the repo (HTTP 404 on the file, repo exists)."""


class _translated:
    """Turn huggingface_hub and network exceptions into one-sentence FluxMusic errors."""

    def __init__(self, ref: ComponentRef, repo_id: str, filename: str) -> None:
        self.ref, self.repo_id, self.filename = ref, repo_id, filename

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        error = translate_error(exc, self.ref, self.repo_id, self.filename)
        if error is None:
            return False
        raise error from exc


def translate_error(
    exc: BaseException, ref: ComponentRef, repo_id: str, filename: str = ""
) -> Exception | None:
    """The FluxMusic error that tells a user what went wrong with a hub request, or None."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import errors as hf

    page = hub_page(repo_id)
    if isinstance(exc, hf.GatedRepoError):
        return ModelMissingError(
            f"The hub repo {repo_id} is gated and the current token has no access to it.",
            hint=(
                f"Accept its licence on {page} while logged in, then set HF_TOKEN or pass "
                "--token (or use a non-gated source)."
            ),
        )
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return _EntryMissing(filename)
    if isinstance(exc, hf.RevisionNotFoundError):
        return ModelMissingError(
            f"The hub repo {repo_id} has no revision {ref.revision!r}.",
            hint="Check the --revision value (a branch, tag or commit hash).",
        )
    if isinstance(exc, hf.RepositoryNotFoundError) or status == 401:
        return ModelMissingError(
            f"The hub repo {repo_id} was not found, or it is private and the current token "
            "cannot see it.",
            hint="Check the repo id; for a private repo set HF_TOKEN or pass --token.",
        )
    if isinstance(exc, hf.LocalEntryNotFoundError):
        return ModelMissingError(
            f"Could not reach the hub to fetch {describe(ref)}, and it is not in the local cache.",
            hint=(
                f"Check the connection and run `{download_command(ref)}` again (finished files "
                "are kept), or give local paths instead."
            ),
        )
    if isinstance(exc, (httpx2.HTTPError, hf.HfHubHTTPError, OSError)):
        if isinstance(exc, OSError) and exc.errno is not None and exc.errno == 28:
            return ModelMissingError(
                f"The disk filled up while downloading {repo_id}/{filename}.",
                hint=f"Free some space in {hub_cache_dir()} (or set HF_HUB_CACHE) and retry.",
            )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ModelMissingError(
            f"Downloading {repo_id}/{filename} failed: {reason}.",
            hint=(
                f"Retry `{download_command(ref)}` (finished files are kept), or give local paths "
                "instead."
            ),
        )
    return None


# -- public entry points --------------------------------------------------------------------


def validate_local(ref: ComponentRef) -> Path:
    """Check that a local source has the shape its kind needs; return its path."""
    assert ref.path is not None
    path = ref.path
    if not path.exists():
        raise UsageError(f"No such file or directory for the {ref.kind} component: {path}")
    if ref.kind == "transformer":
        if not path.is_file() or path.suffix not in _WEIGHT_SUFFIXES:
            raise UsageError(f"The model must be a .pt, .pth or .safetensors file; got {path}.")
        return path
    if not path.is_dir():
        raise UsageError(
            f"The {ref.kind} source must be a directory in the hub repo's layout: {path}"
        )
    if ref.kind == "audioldm2":
        lacking = [d for d in ("vae", "vocoder") if not (path / d / "config.json").is_file()]
        if lacking:
            raise UsageError(
                f"{path} lacks {' and '.join(d + '/config.json' for d in lacking)}; the "
                "--vae-vocoder directory must hold vae/ and vocoder/ as in cvssp/audioldm2."
            )
    elif not any(path.glob("config.json")) and not any(path.glob("*/config.json")):
        raise UsageError(f"{path} holds no config.json; is it a {ref.kind} model directory?")
    return path


def ensure_local(
    ref: ComponentRef,
    *,
    token: str | None = None,
    offline: bool | None = None,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Files of a component on disk: a local path as given, else the hub snapshot folder.

    For a released variant this is the downloaded `.pt` file itself (see `ensure_transformer`
    for the converted file the loader should use).
    """
    if ref.path is not None:
        return validate_local(ref)
    off = _offline(offline)
    if ref.variant is not None:
        v = ref.variant
        snap = _fetch_files(
            ref,
            v.repo_id,
            "main",
            (v.filename,),
            token=token,
            offline=off,
            refresh=refresh,
            progress=progress,
        )
        return snap / v.filename
    assert ref.hub is not None
    return _fetch_files(
        ref,
        ref.hub.repo_id,
        ref.hub.revision,
        ref.hub.files,
        token=token,
        offline=off,
        refresh=refresh,
        progress=progress,
    )


# -- released checkpoints, converted once ---------------------------------------------------


@dataclass(frozen=True)
class ConvertedCheckpoint:
    path: Path
    variant: str
    repo_id: str
    filename: str
    commit: str | None
    etag: str
    sha256: str | None = None  # of the converted file itself, checked before it is used

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "variant": self.variant,
            "repo_id": self.repo_id,
            "filename": self.filename,
            "commit": self.commit,
            "etag": self.etag,
        }

    def intact(self) -> bool:
        """Whether the file still is what was written (a conversion without a stored hash,
        from an older version, is trusted)."""
        from fluxmusic_cli.engine.checkpoint import file_sha256

        return self.sha256 is None or file_sha256(self.path) == self.sha256


def _converted_path(variant: registry.Variant, etag: str) -> Path:
    return paths.converted_dir() / f"{variant.name}-{etag[:16]}.safetensors"


def converted_checkpoints(variant: registry.Variant | None = None) -> list[ConvertedCheckpoint]:
    """Converted checkpoints in the tool cache, newest first."""
    folder = paths.converted_dir()
    if not folder.is_dir():
        return []
    found = []
    for meta_file in folder.glob("*.json"):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        weights = meta_file.with_suffix(".safetensors")
        if not weights.is_file() or (variant is not None and meta.get("variant") != variant.name):
            continue
        found.append(
            ConvertedCheckpoint(
                weights,
                meta.get("variant", ""),
                meta.get("repo_id", ""),
                meta.get("filename", ""),
                meta.get("commit"),
                meta.get("etag", ""),
                meta.get("sha256"),
            )
        )
    found.sort(key=lambda c: c.path.stat().st_mtime, reverse=True)
    return found


def _etag_of(pt_path: Path) -> str:
    target = pt_path.resolve()
    if _HEX.match(target.name):
        return target.name  # the hub cache names blobs by their etag (sha256 for LFS files)
    from fluxmusic_cli.engine.filehash import file_sha256

    return file_sha256(pt_path)


def _convert(variant: registry.Variant, pt_path: Path, etag: str) -> Path:
    """The converted file, or the `.pt` itself when the tool cache cannot be written."""
    from fluxmusic_cli.engine.checkpoint import convert_to_safetensors, file_sha256

    dst = _converted_path(variant, etag)
    try:
        convert_to_safetensors(pt_path, dst)
        _write_conversion_meta(variant, pt_path, etag, dst, file_sha256(dst))
    except OutputError as exc:
        notices.note(
            f"The tool cache cannot be written ({exc.message}); the released checkpoint is "
            "read directly each time instead of once converted (slower to load)."
        )
        return pt_path
    return dst


def _write_conversion_meta(
    variant: registry.Variant, pt_path: Path, etag: str, dst: Path, sha256: str
) -> None:
    meta = {
        "variant": variant.name,
        "repo_id": variant.repo_id,
        "filename": variant.filename,
        "commit": _commit_of(str(pt_path)),
        "etag": etag,
        "source_bytes": pt_path.stat().st_size,
        "sha256": sha256,
    }
    atomic.write_text(dst.with_suffix(".json"), json.dumps(meta, indent=2))


def ensure_transformer(
    ref: ComponentRef,
    *,
    token: str | None = None,
    offline: bool | None = None,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """The transformer weights file to load: a local file as given, else the converted one.

    A released `.pt` is downloaded, converted once to safetensors in the tool cache and then
    reused without network and without reading the `.pt` again. With `refresh=True` the hub
    is asked whether the file changed (one HEAD request) before the cached conversion is used.
    """
    if ref.path is not None:
        return validate_local(ref)
    if ref.variant is None:
        raise UsageError(f"{describe(ref)} is not a transformer checkpoint.")
    variant = ref.variant
    off = _offline(offline)
    existing = [c for c in converted_checkpoints(variant) if _usable(c)]
    if existing and (off or not refresh):
        return existing[0].path
    if existing and not off:
        etag = _remote_etag(ref, token)
        if etag is not None and _converted_path(variant, etag).is_file():
            return _converted_path(variant, etag)
    pt = ensure_local(ref, token=token, offline=off, refresh=refresh, progress=progress)
    etag = _etag_of(pt)
    done = _converted_path(variant, etag)
    if (
        done.is_file()
        and done.with_suffix(".json").is_file()
        and done in [c.path for c in existing]
    ):
        return done
    return _convert(variant, pt, etag)


def _usable(conv: ConvertedCheckpoint) -> bool:
    """An intact conversion; a damaged one is removed (and said once), to be converted again."""
    if conv.intact():
        return True
    notices.note(
        f"The converted checkpoint {conv.path.name} in the tool cache is damaged; it is "
        "converted again from the downloaded file."
    )
    for path in (conv.path, conv.path.with_suffix(".json")):
        with contextlib.suppress(OSError):
            path.unlink()
    return False


def _remote_etag(ref: ComponentRef, token: str | None) -> str | None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    assert ref.variant is not None
    endpoint = hub_endpoint()
    url = hf_hub_url(ref.variant.repo_id, ref.variant.filename, endpoint=endpoint)
    try:
        with _translated(ref, ref.variant.repo_id, ref.variant.filename):
            meta = get_hf_file_metadata(url, token=resolve_token(token), endpoint=endpoint)
    except _EntryMissing:
        return None  # the download that follows reports the missing file
    return meta.etag


def fetch_all(
    refs: Iterable[ComponentRef],
    *,
    token: str | None = None,
    offline: bool | None = None,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Make every component available; one path per ref, in order (a variant's converted file)."""
    out: list[Path] = []
    for ref in refs:
        fn = ensure_transformer if ref.kind == "transformer" else ensure_local
        out.append(fn(ref, token=token, offline=offline, refresh=refresh, progress=progress))
    return out


# -- what is cached -------------------------------------------------------------------------


def is_cached(ref: ComponentRef) -> bool:
    """Whether the component can be used now without any download."""
    if ref.path is not None:
        return ref.path.exists()
    if ref.variant is not None:
        if converted_checkpoints(ref.variant):
            return True
        return local_state(ref.variant.repo_id, "main", (ref.variant.filename,)).complete
    assert ref.hub is not None
    return local_state(ref.hub.repo_id, ref.hub.revision, ref.hub.files).complete


def where(ref: ComponentRef) -> Path | None:
    """Where the component's files are on disk now, or None when they are not there."""
    if ref.path is not None:
        return ref.path if ref.path.exists() else None
    if ref.variant is not None:
        conv = converted_checkpoints(ref.variant)
        if conv:
            return conv[0].path
        state = local_state(ref.variant.repo_id, "main", (ref.variant.filename,))
        return state.present.get(ref.variant.filename)
    assert ref.hub is not None
    state = local_state(ref.hub.repo_id, ref.hub.revision, ref.hub.files)
    return state.snapshot if state.complete else None


def tree_size(path: Path) -> int:
    """Bytes under `path`, following no symlinks except a top-level file's."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class CacheEntry:
    """One removable thing in the caches."""

    name: str
    kind: str  # "hub" (a repo in huggingface_hub's cache), "converted", "embeddings", "other"
    path: Path
    size_bytes: int
    aliases: tuple[str, ...] = ()
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "aliases": list(self.aliases),
            "detail": self.detail,
        }


def _known_repos() -> dict[str, tuple[str, ...]]:
    """Repos the tool downloads from, with the short names `cache rm` accepts for them."""
    repos: dict[str, tuple[str, ...]] = {registry.FLUXMUSIC_REPO: ("fluxmusic", "checkpoints")}
    for comp in registry.T5_SOURCES.values():
        repos[comp.repo_id] = (comp.key, *(a for a in comp.aliases if a != "default"))
    repos[registry.CLAP.repo_id] = ("clap",)
    repos[registry.AUDIOLDM2.repo_id] = ("audioldm2", "vae-vocoder")
    return repos


def list_cache() -> list[CacheEntry]:
    """The tool's cached files and the hub repos it uses, with their sizes."""
    entries: list[CacheEntry] = []
    hub = hub_cache_dir()
    if hub.is_dir():
        from huggingface_hub import scan_cache_dir

        try:
            scan = scan_cache_dir(hub)
        except Exception:  # noqa: BLE001 - a corrupt shared cache must not break listing
            scan = None
        known = _known_repos()
        for repo in scan.repos if scan else ():
            if repo.repo_type == "model" and repo.repo_id in known:
                files = sorted({f.file_name for r in repo.revisions for f in r.files})
                entries.append(
                    CacheEntry(
                        repo.repo_id,
                        "hub",
                        repo.repo_path,
                        repo.size_on_disk,
                        known[repo.repo_id],
                        detail=", ".join(files),
                    )
                )
    root = paths.cache_dir()
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.name == "converted" and child.is_dir():
                for conv in converted_checkpoints():
                    entries.append(
                        CacheEntry(
                            f"converted/{conv.path.name}",
                            "converted",
                            conv.path,
                            tree_size(conv.path),
                            (conv.variant,),
                            detail=f"from {conv.repo_id}/{conv.filename}",
                        )
                    )
            elif child.name == "embeddings" and child.is_dir():
                for item in sorted(child.iterdir()):
                    if not item.name.startswith("."):
                        name = f"embeddings/{item.name}"
                        entries.append(CacheEntry(name, "embeddings", item, tree_size(item)))
            elif not child.name.startswith("."):
                entries.append(CacheEntry(child.name, "other", child, tree_size(child)))
    return entries


def find_cache_entries(name: str, entries: list[CacheEntry] | None = None) -> list[CacheEntry]:
    """Entries called `name` or carrying it as an alias (a variant name matches its conversions)."""
    entries = list_cache() if entries is None else entries
    key = name.strip()
    return [e for e in entries if key == e.name or key in e.aliases]


def remove_cache_entry(entry: CacheEntry) -> int:
    """Delete one entry; returns the bytes freed. A folder that refuses (read-only, another
    user's) is one sentence."""
    try:
        return _remove(entry)
    except OSError as exc:
        raise atomic.os_error(exc, Path(exc.filename or entry.path), "remove") from None


def _remove(entry: CacheEntry) -> int:
    if entry.kind == "hub":
        from huggingface_hub import scan_cache_dir

        scan = scan_cache_dir(hub_cache_dir())
        for repo in scan.repos:
            if repo.repo_path == entry.path:
                strategy = scan.delete_revisions(*(r.commit_hash for r in repo.revisions))
                strategy.execute()
        if entry.path.exists():
            shutil.rmtree(entry.path, ignore_errors=True)
        return entry.size_bytes
    if entry.path.is_dir() and not entry.path.is_symlink():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink(missing_ok=True)
        if entry.kind == "converted":
            entry.path.with_suffix(".json").unlink(missing_ok=True)
    return entry.size_bytes
