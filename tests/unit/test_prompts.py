"""Reading prompt lists: formats, dataset CSVs, per-row overrides and per-row errors."""

from __future__ import annotations

import csv
import io

import pytest

from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.prompts import parse_prompts, read_prompts

MUSICCAPS_COLUMNS = [
    "ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
    "author_id", "is_balanced_subset", "is_audioset_eval",
]  # fmt: skip
SONG_DESCRIBER_COLUMNS = [
    "caption_id", "track_id", "caption", "is_valid_subset", "familiarity", "artist_id",
    "album_id", "path", "duration",
]  # fmt: skip


def _csv(columns: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def test_txt_skips_comments_and_blank_lines_and_numbers_rows(tmp_path):
    path = tmp_path / "cues.txt"
    path.write_text("# album cues\n\nwarm piano\n   \n  epic drums  \n# end\nflute\n")
    table = read_prompts(path)
    assert table.kind == "txt" and not table.errors
    assert [(r.number, r.line, r.prompt) for r in table.rows] == [
        (1, 3, "warm piano"),
        (2, 5, "epic drums"),
        (3, 7, "flute"),
    ]


def test_csv_captions_with_commas_quotes_and_newlines_survive(tmp_path):
    text = _csv(
        ["name", "prompt"],
        [["a", 'piano, "soft", slow'], ["b", "line one\nline two"], ["c", "plain"]],
    )
    path = tmp_path / "list.csv"
    path.write_text(text, newline="")
    table = read_prompts(path)
    assert [r.prompt for r in table.rows] == ['piano, "soft", slow', "line one line two", "plain"]
    assert [r.number for r in table.rows] == [1, 2, 3]
    assert table.rows[2].line == 5  # the quoted newline makes row 2 span lines 3 and 4


def test_csv_override_columns_are_typed_and_empty_cells_mean_unset():
    text = _csv(
        ["prompt", "seed", "duration", "negative_prompt", "guidance", "steps"],
        [["a", "7", "5.5", "noise", "3.5", "25"], ["b", "", "", "", "", ""]],
    )
    rows = parse_prompts(text, "csv").rows
    assert (rows[0].seed, rows[0].duration, rows[0].negative_prompt) == (7, 5.5, "noise")
    assert (rows[0].guidance, rows[0].steps) == (3.5, 25)
    assert (rows[1].seed, rows[1].duration, rows[1].guidance, rows[1].steps) == (None,) * 4
    assert rows[1].negative_prompt is None


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (["", "1", "", ""], "empty prompt"),
        (["x", "abc", "", ""], "bad seed 'abc'"),
        (["x", "-1", "", ""], "bad seed -1"),
        (["x", "1.5", "", ""], "bad seed '1.5'"),
        (["x", "", "0", ""], "bad steps 0"),
        (["x", "", "", "-2"], "bad guidance -2"),
        (["x", "", "", "nan"], "bad guidance 'nan'"),
    ],
)
def test_a_bad_row_is_reported_with_its_reason_and_the_rest_go_on(cells, reason):
    text = _csv(["prompt", "seed", "steps", "guidance"], [["ok", "", "", ""], cells, ["ok2"]])
    table = parse_prompts(text, "csv")
    assert [r.prompt for r in table.rows] == ["ok", "ok2"]
    assert [r.number for r in table.rows] == [1, 3]
    (error,) = table.errors
    assert error.number == 2 and error.line == 3
    assert error.reason.startswith(reason)


def test_musiccaps_csv_is_named_by_ytid():
    text = _csv(
        MUSICCAPS_COLUMNS,
        [
            ["-0Gj8-vB1q4", "30", "40", "/m/0140xf", "['low quality']",
             "The low quality recording features a ballad song, with piano.", "4", "False",
             "False"],
            ["-0SdAVK79lg", "30", "40", "/m/0155w", "['guitar']",
             'A "clean" guitar riff,\nthen drums.', "0", "True", "True"],
        ],
    )  # fmt: skip
    table = parse_prompts(text, "csv")
    assert table.kind == "musiccaps"
    assert [(r.name, r.prompt) for r in table.rows] == [
        ("-0Gj8-vB1q4", "The low quality recording features a ballad song, with piano."),
        ("-0SdAVK79lg", 'A "clean" guitar riff, then drums.'),
    ]


def test_song_describer_csv_is_named_by_caption_id_and_its_duration_is_not_a_request():
    text = _csv(
        SONG_DESCRIBER_COLUMNS,
        [
            ["1", "1310", "An energetic rock song, with a twist.", "True", "2", "7", "8",
             "10/1310.2min.mp3", "238.4"],
            ["2", "1310", "Slow, dreamy synths.", "False", "1", "7", "8", "10/1310.2min.mp3",
             "238.4"],
        ],
    )  # fmt: skip
    table = parse_prompts(text, "csv")
    assert table.kind == "song-describer"
    assert [(r.name, r.prompt, r.duration) for r in table.rows] == [
        ("1", "An energetic rock song, with a twist.", None),
        ("2", "Slow, dreamy synths.", None),
    ]


def test_csv_without_a_prompt_column_is_refused_as_a_whole():
    with pytest.raises(UsageError, match="no 'prompt' or 'caption' column"):
        parse_prompts("title,seed\nx,1\n", "csv")


def test_jsonl_reads_fields_and_reports_broken_lines():
    text = "\n".join(
        [
            '{"prompt": "a", "seed": 3, "name": "first", "guidance": 2}',
            "{not json",
            '["a list"]',
            '{"caption": "from caption", "steps": 10}',
            '{"prompt": "x", "seed": true}',
        ]
    )
    table = parse_prompts(text, "jsonl")
    assert [(r.number, r.name, r.prompt, r.seed, r.guidance) for r in table.rows] == [
        (1, "first", "a", 3, 2.0),
        (4, None, "from caption", None, None),
    ]
    assert table.rows[1].steps == 10
    assert [(e.number, e.line) for e in table.errors] == [(2, 2), (3, 3), (5, 5)]
    assert "not valid JSON" in table.errors[0].reason
    assert "bad seed True" in table.errors[2].reason


def test_stdin_is_sniffed_as_text_or_json_lines():
    as_text = read_prompts("-", stdin=io.StringIO("one\ntwo\n"))
    assert as_text.kind == "txt" and [r.prompt for r in as_text.rows] == ["one", "two"]
    as_json = read_prompts("-", stdin=io.StringIO('\n{"prompt": "j", "seed": 4}\n'))
    assert as_json.kind == "jsonl" and as_json.rows[0].seed == 4


def test_missing_empty_and_unknown_files_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="No such prompt list"):
        read_prompts(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(UsageError, match="holds no prompts"):
        read_prompts(tmp_path / "empty.txt")
    (tmp_path / "list.xlsx").write_text("x")
    with pytest.raises(UsageError, match="Cannot tell the format"):
        read_prompts(tmp_path / "list.xlsx")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError, match="not UTF-8"):
        read_prompts(tmp_path / "latin1.txt")


def test_a_byte_order_mark_does_not_hide_the_header(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffprompt,seed\r\nwarm piano,5\r\n".encode())
    table = read_prompts(path)
    assert [(r.prompt, r.seed) for r in table.rows] == [("warm piano", 5)]
