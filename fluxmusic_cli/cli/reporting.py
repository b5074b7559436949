"""Saying what was written: one line per clip on stderr, or one JSON document on stdout."""

from __future__ import annotations

from fluxmusic_cli.cli.console import emit_json, err, warn


def written_name(item) -> str:
    return str(item.path) if item.path is not None else "stdout"


def report_clips(written, warnings: list[str], *, json_out: bool, quiet: bool) -> None:
    for w in warnings:
        warn(w)
    if json_out:
        emit_json(
            {
                "outputs": [
                    {"path": str(w.path) if w.path else "-", "record": w.record} for w in written
                ],
                "warnings": warnings,
            }
        )
        return
    if quiet:
        return
    for w in written:
        r = w.record
        lufs = f", {r['lufs']:.1f} LUFS" if r.get("lufs") is not None else ""
        what = "" if r.get("operation", "generate") == "generate" else f"{r['operation']}, "
        err.print(
            f"[green]wrote[/green] {written_name(w)}  ({what}{r['duration']:g} s, "
            f"{r['output_sample_rate']} Hz, seed {r['seed']}, peak {r['peak']:.2f}{lufs})"
        )
