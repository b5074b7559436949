"""`vary --strength` without `--input` is refused, not silently ignored."""

from __future__ import annotations


def test_strength_without_an_input_is_refused_before_anything_is_made(
    run_cli, tiny_bundle, tmp_path, load_counts
):
    out = tmp_path / "grid"
    code, _, err = run_cli(
        ["vary", "harp", "-o", str(out), "--strength", "0.3,0.6", *tiny_bundle.cli_args()]
    )
    assert code == 2
    assert "--strength" in err and "needs --input FILE" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1
    assert not out.exists() and load_counts == {"transformer": 0, "decoder": 0}
