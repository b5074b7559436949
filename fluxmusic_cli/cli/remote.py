"""Where a command's clips are made: here (the default), or on the `fluxmusic serve` that
`--server URL` or FLUXMUSIC_HOST names (`--local`: here regardless).

`connect` decides before anything is planned: it reaches the server (one sentence and exit 7
when it cannot), reads the engine the server runs, refuses an engine option the user gave that
differs from it (one sentence naming both, exit 2), and fits the options a job may leave to
the server (its --encoders) to the server's value. The `Remote` it returns gives the commands'
reporting the run service's twin, which sends each clip as a job and writes it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from fluxmusic_cli.cli.option_group import EngineGroup, Shared
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.metadata import GenerationRecord

if TYPE_CHECKING:
    from fluxmusic_cli.client.api import ServerAPI
    from fluxmusic_cli.client.service import Progress, RemoteRunService
    from fluxmusic_cli.engine.requests import EditSource

# Engine options compared with the server's: EngineGroup field -> (flag, GET /v1/engine key).
# --encoders is a job's own (sent with it); --token and --yes mean nothing to a server.
_COMPARED: dict[str, tuple[str, str]] = {
    "model": ("--model", "model"),
    "t5": ("--t5", "t5"),
    "clap": ("--clap", "clap"),
    "vae_vocoder": ("--vae-vocoder", "vae_vocoder"),
    "lora": ("--lora", "loras"),
    "conditioning": ("--conditioning", "conditioning"),
    "device": ("--device", "device"),
    "dtype": ("--dtype", "dtype"),
    "text_device": ("--text-device", "text_device"),
    "memory": ("--memory", "memory"),
    "compile_model": ("--compile", "compile"),
    "threads": ("--threads", "threads"),
}
_SOURCES = {"model": "transformer", "t5": "t5", "clap": "clap", "vae_vocoder": "audioldm2"}
_RESOLVED = ("device", "dtype", "text_device")  # "auto" on the server resolves to one of these


@dataclass
class Remote:
    """A server the command's clips go to: its API, the engine it runs, the options the user
    gave, and the recordings it already has or will be sent."""

    api: ServerAPI
    engine: dict[str, Any]  # GET /v1/engine
    given: frozenset[str]
    inputs: dict[str, str] = field(default_factory=dict)  # sha256 -> "job:ID"
    recordings: dict[str, bytes] = field(default_factory=dict)  # sha256 -> stdin's bytes

    @property
    def identity(self) -> dict[str, Any]:
        """The server's model sources, as records name them (what resuming a folder checks)."""
        return self.engine["identity"]

    @property
    def encoders(self) -> str:
        """The server's --encoders: what a job that leaves them out runs with."""
        return str(self.engine["options"].get("encoders") or "both")

    @property
    def model(self) -> str:
        return str(self.engine["options"].get("model", ""))

    @property
    def conditioning(self) -> str:
        return str(self.engine["options"].get("conditioning", ""))

    def service(self, progress: Progress | None = None, *, window: int = 1) -> RemoteRunService:
        """The run service's twin for this server (`window` jobs queued at a time)."""
        from fluxmusic_cli.client.service import RemoteRunService

        return RemoteRunService(
            self.api,
            given=self.given,
            defaults={"encoders": self.encoders},
            progress=progress,
            window=window,
            inputs=self.inputs,
            recordings=self.recordings,
        )

    def edit_source(
        self, source: EditSource, notes: list[str], data: bytes | None = None
    ) -> EditSource:
        """The recording an edit sends (`data`: its bytes when it came on stdin). Its latent
        sidecar counts only when the server made the clip and keeps that latent (the job then
        starts from it, as a local edit does); otherwise the server re-encodes the audio, and
        the source and notes say so, so that the plan and the record match what runs."""
        if data is not None:
            self.recordings[source.sha256] = data
        if source.latent is None:
            return source
        from fluxmusic_cli.client.service import server_copy

        ref = server_copy(self.api, source)
        if ref is not None:
            self.inputs[source.sha256] = ref
            return source
        from fluxmusic_cli.edit_input import latent_note

        sidecar = Path(source.latent_file).name
        notes[:] = [n for n in notes if n != latent_note(sidecar)]
        notes.append(
            f"re-encoding the audio on the server: {sidecar} is used there only with a clip "
            "the server made and still keeps"
        )
        return replace(source, latent=None, latent_file=None)


def connect(
    ctx: typer.Context, shared: Shared, record: GenerationRecord | None = None
) -> tuple[Remote | None, Shared]:
    """The server the clips go to (None: they are made here), and `shared` with the options a
    job leaves to the server set to the server's values. `record`: the record being replayed
    (its options count as given)."""
    from fluxmusic_cli.cli.replay import given_options

    client = shared.client
    if client.local:
        if client.server and _typed(ctx, "server"):
            raise UsageError("--server and --local contradict each other; drop one.")
        return None, shared
    if not client.server:
        return None, shared

    from fluxmusic_cli.client.api import ServerAPI, find_token, server_url

    url = server_url(client.server)
    api = ServerAPI(url, find_token(url))
    api.health()
    engine = api.engine()
    typed = given_options(ctx)
    given = given_options(ctx, record)
    _check_engine(shared.engine, given, typed, record, engine, api.url)
    remote = Remote(api, engine, given)
    if "encoders" not in given:
        shared = replace(shared, engine=replace(shared.engine, encoders=remote.encoders))
    return remote, shared


def _typed(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _check_engine(
    engine: EngineGroup,
    given: frozenset[str],
    typed: frozenset[str],
    record: GenerationRecord | None,
    info: dict[str, Any],
    url: str,
) -> None:
    """Refuse the first engine option the user gave (typed, or replayed from `record`) that
    the server does not run, in one sentence naming both."""
    options = info["options"]
    for name, (flag, key) in _COMPARED.items():
        if name not in given:
            continue
        replayed = record if name not in typed else None
        value = getattr(engine, name)
        if _agrees(name, value, info, replayed):
            continue
        origin = " (from the record)" if replayed is not None else ""
        raise UsageError(
            f"{flag} {_shown(value)}{origin} is not what the server at {url} runs "
            f"({flag} {_shown(options.get(key))}); leave {flag} out to use the server's, or "
            "add --local to make the clips here."
        )


def _agrees(name: str, value: Any, info: dict[str, Any], record: GenerationRecord | None) -> bool:
    """Whether the server runs `value` of the engine option `name` (`record`: the value was
    replayed from it, and the record names sources as the server does)."""
    options, identity = info["options"], info["identity"]
    resolved = info.get("resolved") or {}
    key = _COMPARED[name][1]
    if name in _SOURCES:
        if record is not None:
            model = (record.model or {}).get("source")
            made_with = model if name == "model" else record.lookup(name)
            if made_with:
                return made_with == identity.get(name)
        if value == options.get(key):
            return True
        from fluxmusic_cli.engine.sources import parse_ref

        try:
            return parse_ref(_SOURCES[name], str(value)).identity == identity.get(name)
        except UsageError:  # a path this machine does not have
            return False
    if name == "lora":
        if record is not None:
            mine = [f"{x['file']}:{x['scale']:g}" for x in record.loras or []]
        else:
            from fluxmusic_cli.cli.options import loras

            mine = [f"{Path(f).resolve()}:{scale:g}" for f, scale in loras(value)]
        return mine == list(identity.get("loras") or [])
    if name in _RESOLVED:
        return value in (options.get(key), resolved.get(key))
    if name == "compile_model":
        return bool(value) == bool(options.get(key))
    return value == options.get(key)


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value) or "(none)"
    if value is None:
        return "(its default)"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
