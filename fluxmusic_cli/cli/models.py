"""`fluxmusic models`, `fluxmusic download` and `fluxmusic cache list|rm|path`.

Thin: parse, ask the engine (`engine.hub`, `engine.preflight`), report. The fetching itself,
with its pre-flight summary and question, is the download service in `cli/downloads.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from fluxmusic_cli.cli import config
from fluxmusic_cli.cli.console import emit_json, info
from fluxmusic_cli.cli.downloads import confirm, confirm_plan, download_refs, fetch, render_plan
from fluxmusic_cli.cli.options import (
    T5,
    Clap,
    EncodersChoice,
    EncodersOpt,
    Json,
    Quiet,
    Token,
    VaeVocoder,
    Yes,
)
from fluxmusic_cli.engine import cache, conversion, hub, paths, preflight, registry
from fluxmusic_cli.engine.preflight import human_bytes
from fluxmusic_cli.engine.sources import ComponentRef, parse_ref
from fluxmusic_cli.errors import UsageError

# -- fluxmusic download -----------------------------------------------------------------------


def _store_empty_embeddings(refs: Sequence[ComponentRef], token: str | None, quiet: bool) -> list:
    """Encode "" once per downloaded text encoder and mode, so a left-out encoder stays unloaded."""
    from fluxmusic_cli.engine.conditioning import TextConditioner

    encoders = {r.kind: r for r in refs if r.kind in ("t5", "clap")}
    if not encoders:
        return []
    from fluxmusic_cli.engine.devices import resolve_placement

    # The placement generate would use (bf16 where native): T5-XXL in fp32 needs ~19 GB.
    place = resolve_placement("auto", "auto")
    conditioner = TextConditioner(
        t5=encoders.get("t5"),
        clap=encoders.get("clap"),
        device=place.device,
        dtype=place.torch_dtype,
        resolve=lambda ref: hub.ensure_local(ref, token=token),
    )
    stored = []
    for kind in encoders:
        if not quiet:
            info(f"Storing the empty-prompt embeddings of {kind} ...")
        keys = conditioner.precompute_empty((kind,))
        stored += [{"encoder": kind, "mode": key.mode} for key in keys]
        conditioner.release()
    return stored


def download(
    what: Annotated[
        list[str] | None,
        typer.Argument(
            help="Variants (small, base, large, giant, giant-full) and/or components (t5, "
            "clap, vae-vocoder). Default: the small variant's whole setup.",
            metavar="WHAT",
            show_default=False,
        ),
    ] = None,
    encoders: EncodersOpt = EncodersChoice.both,
    t5: T5 = config.Default("t5"),
    clap: Clap = config.Default("clap"),
    vae_vocoder: VaeVocoder = config.Default("vae_vocoder"),
    token: Token = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Ask the hub for newer files even when cached.")
    ] = False,
    embeddings: Annotated[
        bool,
        typer.Option(
            "--embeddings/--no-embeddings",
            help="After downloading, store each text encoder's empty-prompt embedding (loads "
            "the encoder once).",
        ),
    ] = True,
    yes: Yes = False,
    json_out: Json = False,
    quiet: Quiet = False,
) -> None:
    """Fetch weights into the Hugging Face cache, convert checkpoints once, store embeddings.

    A summary comes first (what, how big, free disk, gated access, memory); above 4 GB you are
    asked unless --yes. Naming a variant fetches its whole setup (transformer, the --encoders,
    VAE + vocoder); naming only components fetches just those. Files already on disk, including
    those other tools downloaded through huggingface_hub, are reused; a dropped connection
    resumes where it stopped, and files finished before a Ctrl-C are kept. HF_HUB_OFFLINE=1
    makes this fail fast for anything not cached.

    Examples:

      fluxmusic download                      # small + T5 + CLAP + VAE/vocoder

      fluxmusic download large --encoders clap

      fluxmusic download t5 --t5 t5-sd3 --token hf_...
    """
    encoder_choice = encoders.value if isinstance(encoders, EncodersChoice) else str(encoders)
    refs = download_refs(
        what or [], encoders=encoder_choice, t5=t5, clap=clap, vae_vocoder=vae_vocoder
    )
    plan = preflight.plan_download(refs, token=token)
    if not quiet:
        render_plan(plan)
    plan.check()
    if not plan.nothing_to_do or refresh:
        confirm_plan(plan, yes=yes)
    got = fetch(refs, token=token, quiet=quiet, refresh=refresh)
    stored = _store_empty_embeddings(refs, token, quiet) if embeddings else []
    labels = [r.variant.name if r.variant else r.kind for r in refs]
    if json_out:
        emit_json(
            {
                "plan": plan.to_dict(),
                "paths": {label: str(path) for label, path in zip(labels, got, strict=True)},
                "empty_embeddings": stored,
            }
        )
    elif not quiet:
        for label, path in zip(labels, got, strict=True):
            info(f"[green]ready[/green] {label}: {path}")


# -- fluxmusic models -------------------------------------------------------------------------


def _model_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for v in registry.VARIANTS.values():
        ref = parse_ref("transformer", v.name)
        converted = conversion.converted_checkpoints(v)
        pt = hub.local_state(v.repo_id, "main", (v.filename,))
        state = "converted" if converted else ("pt only" if pt.complete else "no")
        where = cache.where(ref)
        rows.append(
            {
                "name": v.name,
                "kind": "transformer",
                "source": f"{v.repo_id}/{v.filename}",
                "params": v.params,
                "download_bytes": v.size_bytes,
                "gated": False,
                "cached": state,
                "where": str(where) if where else None,
            }
        )
    comps = [("t5", c) for c in registry.T5_SOURCES.values()]
    comps += [("clap", registry.CLAP), ("audioldm2", registry.AUDIOLDM2)]
    for kind, comp in comps:
        ref = ComponentRef(kind=kind, hub=comp)  # type: ignore[arg-type]
        where = cache.where(ref)
        # The VAE + vocoder is "vae-vocoder" to the user everywhere (--vae-vocoder, download).
        label = "vae-vocoder" if kind == "audioldm2" else None
        rows.append(
            {
                "name": label or comp.key,
                "kind": label or kind,
                "source": comp.repo_id,
                "params": registry.PARAMS_BY_KIND[kind],
                "download_bytes": comp.size_bytes,
                "gated": comp.gated,
                "cached": "yes" if where else "no",
                "where": str(where) if where else None,
            }
        )
    return rows


def models(json_out: Json = False) -> None:
    """List the FluxMusic variants and the components around them: size, cached or not, where.

    Examples:

      fluxmusic models

      fluxmusic models --json | jq '.[] | select(.cached != "no") | .name'
    """
    rows = _model_rows()
    if json_out:
        emit_json(rows)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("name", "kind", "params", "download", "cached", "where"):
        table.add_column(col, justify="right" if col in ("params", "download") else "left")
    for r in rows:
        name = f"{r['name']} (gated)" if r["gated"] else str(r["name"])
        table.add_row(
            name,
            str(r["kind"]),
            f"{int(r['params']) / 1e6:,.0f} M",  # type: ignore[call-overload]
            human_bytes(int(r["download_bytes"])),  # type: ignore[call-overload]
            str(r["cached"]),
            str(r["where"] or "-"),
        )
    _print_table(table)
    info(
        f"Default: {registry.DEFAULT_VARIANT} with {registry.DEFAULT_T5}; fetch with "
        "`fluxmusic download [VARIANT]`. To try any command without downloading, add "
        "--model tiny (random weights: the audio is noise)."
    )


def _print_table(table: Table) -> None:
    """Listings are the command's output: stdout, plain when piped."""
    from rich.console import Console

    # Piped output keeps whole paths: the console is as wide as the table needs.
    width = None if sys.stdout.isatty() else 10_000
    Console(highlight=False, width=width).print(table)


# -- fluxmusic cache --------------------------------------------------------------------------

cache_app = typer.Typer(
    help="Show, locate and remove cached weights, conversions and embeddings.",
    no_args_is_help=True,
)


@cache_app.command("list")
def cache_list(json_out: Json = False) -> None:
    """Cached entries with their sizes: hub repos the tool uses, converted checkpoints, embeddings.

    Hub repos live in huggingface_hub's cache, shared with other tools.

    Example: fluxmusic cache list
    """
    entries = cache.list_cache()
    total = sum(e.size_bytes for e in entries)
    if json_out:
        emit_json(
            {
                "entries": [e.to_dict() for e in entries],
                "total_bytes": total,
                "tool_cache": str(paths.cache_dir()),
                "hub_cache": str(hub.hub_cache_dir()),
            }
        )
        return
    if not entries:
        info("The cache is empty.")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("name", "kind", "size", "path"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for e in entries:
        table.add_row(e.name, e.kind, human_bytes(e.size_bytes), str(e.path))
    table.add_row("total", "", human_bytes(total), "")
    _print_table(table)


@cache_app.command("rm")
def cache_rm(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Entry names from `cache list`, or short names: a variant (its conversions), "
            "fluxmusic (the released .pt files), t5-city96, t5-sd3, clap, vae-vocoder, tiny.",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every listed entry.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove cached entries (hub repos are removed from huggingface_hub's shared cache).

    Examples:

      fluxmusic cache rm small            # converted small checkpoint(s)

      fluxmusic cache rm fluxmusic --yes  # the downloaded .pt files

      fluxmusic cache rm --all
    """
    entries = cache.list_cache()
    if all_:
        chosen = entries
    elif names:
        chosen = []
        for name in names:
            found = cache.find_cache_entries(name, entries)
            if not found:
                known = ", ".join(e.name for e in entries) or "none, the cache is empty"
                raise UsageError(f"No cache entry called {name!r}; entries: {known}.")
            chosen += [e for e in found if e not in chosen]
    else:
        raise UsageError("Name what to remove (see `fluxmusic cache list`), or pass --all.")
    if not chosen:
        info("The cache is empty; nothing to remove.")
        return
    size = human_bytes(sum(e.size_bytes for e in chosen))
    if not yes:
        listing = ", ".join(e.name for e in chosen)
        confirm(
            f"Remove {listing} ({size})?",
            refusal=f"Removing {listing} ({size}) needs confirmation; pass --yes when not "
            "running in a terminal.",
            declined="Nothing was removed.",
            default=False,
        )
    freed = sum(cache.remove_cache_entry(e) for e in chosen)
    info(
        f"Removed {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'}, "
        f"{human_bytes(freed)} freed."
    )


@cache_app.command("path")
def cache_path(
    hub_dir: Annotated[
        bool, typer.Option("--hub", help="Print huggingface_hub's cache folder instead.")
    ] = False,
    json_out: Json = False,
) -> None:
    """Print the tool's cache folder (FLUXMUSIC_CACHE overrides it), or with --hub the hub's.

    Example: du -sh "$(fluxmusic cache path)"
    """
    if json_out:
        emit_json({"tool_cache": str(paths.cache_dir()), "hub_cache": str(hub.hub_cache_dir())})
        return
    typer.echo(str(hub.hub_cache_dir() if hub_dir else paths.cache_dir()))


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("download")(download)
    app.add_typer(cache_app, name="cache")
