"""An item as a job's body: the prompt, seed and format always; of the rest, what the user gave
and what the run set itself, and nothing the server would fill in the same way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fluxmusic_cli.client.jobs import job_body
from fluxmusic_cli.engine.requests import EditSource, GenerateSettings
from fluxmusic_cli.output import ClipWriter
from fluxmusic_cli.runs.plan import Edit, Item

SERVER = {"encoders": "both"}


def _item(**settings) -> Item:
    return Item(
        index=0, name="a", prompt="slow piano", seed=7,
        settings=GenerateSettings(encoders="both", **settings), path=Path("out/a.flac"),
    )  # fmt: skip


def _edit(operation: str, **values) -> Item:
    source = EditSource(path="take.wav", sha256="0" * 64, samples=None, source_rate=16000,
                        channels=1)  # fmt: skip
    return replace(_item(), edit=Edit(operation, source, **values), path=Path("e.wav"))


def test_a_clip_at_the_defaults_sends_its_prompt_seed_and_format_only():
    assert job_body(_item(), defaults=SERVER) == {
        "command": "generate", "prompt": "slow piano", "seed": 7, "format": "flac",
    }  # fmt: skip


def test_given_options_are_sent_even_at_their_defaults_and_set_ones_always():
    item = _item(steps=12, guidance_interval="0.2:0.8", loop=True, seam=0.32)
    body = job_body(item, given={"guidance", "steps"}, defaults=SERVER)
    assert body["guidance"] == 7.0  # typed, though the default
    assert (body["steps"], body["loop"], body["seam"]) == (12, True, 0.32)
    assert body["guidance_interval"] == "0.2:0.8"
    assert "negative_prompt" not in body and "duration" not in body


def test_encoders_are_left_to_the_server_when_they_are_its_own():
    assert "encoders" not in job_body(_item(), defaults={"encoders": "both"})
    assert job_body(_item(), defaults={"encoders": "clap"})["encoders"] == "both"


def test_writer_options_travel_with_the_job():
    item = replace(_item(), writer=ClipWriter(sample_rate=44100, save_latent=True))
    body = job_body(item, defaults=SERVER)
    assert (body["sample_rate"], body["save_latent"]) == (44100, True)
    assert "peak_normalize" not in body


@pytest.mark.parametrize(
    "operation, values, fields",
    [
        ("remix", {"strength": 0.6}, {"strength": 0.6}),
        ("repaint", {"regions": ((0.2, 0.6), (1.0, None))}, {"region": ["0.2:0.6", "1.0:"]}),
        ("extend", {"add": 4.0, "context": 2.56}, {"add": 4.0, "context": 2.56}),
        ("loop", {"seam": 0.32, "crossfade": 0.0}, {"seam": 0.32, "crossfade": 0.0}),
    ],
)
def test_an_edit_sends_its_own_values_and_its_input(operation, values, fields):
    body = job_body(_edit(operation, **values), defaults=SERVER, input_ref="upload:x")
    assert body == {
        "command": operation, "prompt": "slow piano", "seed": 7, "format": "wav",
        "input": "upload:x", **fields,
    }  # fmt: skip
