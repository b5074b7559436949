"""Getting weights onto disk: hub downloads into huggingface_hub's own cache, and local paths.

Hub files go into huggingface_hub's own cache, so whatever another tool already fetched is
reused. The tool's cache (`paths.cache_dir()`) only holds what it derives: converted
checkpoints (`engine.conversion`) and stored embeddings; `engine.cache` lists and removes both.

Cache first: when every file a component needs is already in the hub cache, no request is
made (generation then works on a plane); `refresh=True` asks the hub for a newer revision.

huggingface_hub reads its environment variables once, at import; this module reads
`HF_HUB_OFFLINE`, `HF_HUB_CACHE`/`HF_HOME`, `HF_ENDPOINT` and `HF_TOKEN` at call time and passes
them explicitly, so a value set after import still counts. Nothing here prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fluxmusic_cli.engine import registry
from fluxmusic_cli.engine.sources import ComponentRef
from fluxmusic_cli.errors import ModelMissingError, UsageError

# (label, bytes done, bytes total or None), called as a file downloads.
ProgressCallback = Callable[[str, int, "int | None"], None]

_TRUE = {"1", "on", "yes", "true"}
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


def resolve_offline(offline: bool | None) -> bool:
    """`offline` as given, else whether HF_HUB_OFFLINE says so now."""
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


def commit_of(path: str) -> str | None:
    """The commit in a hub cache path (`.../snapshots/COMMIT/...`), or None."""
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
            commit = commit or commit_of(got)
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
    off = resolve_offline(offline)
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


def remote_etag(ref: ComponentRef, token: str | None) -> str | None:
    """The hub's current etag of a released variant's file (one HEAD request), or None when
    the repo has no such file."""
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
