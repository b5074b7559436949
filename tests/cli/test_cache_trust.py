"""Caches are an optimisation, never trusted blindly: keyed by what identifies the weights,
checked on every read, and skipped (said once) when they cannot be written."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fakehub import folder_files, serve_tiny_bundle, start_fake_hub

from fluxmusic_cli.engine import registry

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]


def audio(path: Path) -> np.ndarray:
    return sf.read(path)[0]


@pytest.fixture
def gen(monkeypatch, run_cli, tiny_bundle, tmp_path):
    monkeypatch.chdir(tmp_path)

    def _gen(*args):
        return run_cli(["generate", *tiny_bundle.cli_args(), *FAST, *args])

    return _gen


@pytest.fixture
def read_only(tmp_path):
    """`read_only(folder)`: `folder` bind-mounted read-only over itself (root only)."""
    mounts: list[Path] = []

    def _make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for args in (["--bind", str(folder), str(folder)],
                     ["-o", "remount,ro,bind", str(folder)]):  # fmt: skip
            done = subprocess.run(["mount", *args], capture_output=True, text=True)
            if done.returncode != 0:
                if mounts or args[0] == "-o":
                    subprocess.run(["umount", str(folder)], check=False)
                pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
            if args[0] == "--bind":
                mounts.append(folder)
        return folder

    yield _make
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A tmpfs with no room left (root only)."""
    point = tmp_path / "full"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or 'not root'}")
    (point / "cache").mkdir()
    fd = os.open(point / "filler", os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while os.write(fd, b"\0" * 4096):
            pass
    os.close(fd)
    assert os.statvfs(point).f_bavail == 0
    yield point / "cache"
    subprocess.run(["umount", "-l", str(point)], check=False)


# -- 3. a read-only or full tool cache -------------------------------------------------------


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_cache_that_cannot_be_written_is_said_once_and_generation_goes_on(
    gen, tmp_path, monkeypatch, request, fault
):
    if fault == "read-only":
        cache = request.getfixturevalue("read_only")(tmp_path / "shared-cache")
    else:
        cache = request.getfixturevalue("full_disk")
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(cache))
    code, _, err = gen("cello and bells", "-o", "a.wav", "--seed", "1", "-n", "2")
    assert code == 0, err
    assert err.count("cannot be written") == 1 and "unexpected" not in err
    assert (tmp_path / "a-s1.wav").is_file() and (tmp_path / "a-s2.wav").is_file()


def test_cache_rm_on_a_read_only_cache_is_a_sentence(gen, run_cli, tmp_path, read_only):
    assert gen("cello", "-o", "a.wav", "--seed", "1")[0] == 0
    cache = Path(os.environ["FLUXMUSIC_CACHE"])
    read_only(cache)
    code, _, err = run_cli(["cache", "rm", "--all", "--yes"])
    assert code == 2, err
    assert "read-only" in err and "unexpected" not in err and "Traceback" not in err


# -- 6. entries checked on every read --------------------------------------------------------


def _zero_embeddings(cache: Path, prompt: str | None = None) -> int:
    """Overwrite every stored embedding's numbers (only `prompt`'s, when given) with zeros,
    keeping its header and key."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    count = 0
    for path in (cache / "embeddings").rglob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            meta, tensor = f.metadata(), f.get_tensor("embedding")
        if prompt is not None and meta["prompt"] != prompt:
            continue
        save_file({"embedding": tensor * 0}, str(path), metadata=meta)
        count += 1
    return count


def test_a_zeroed_embedding_entry_is_recomputed_and_said_once(gen, tmp_path):
    assert gen("cello", "-o", "a.wav", "--seed", "1")[0] == 0
    assert _zero_embeddings(Path(os.environ["FLUXMUSIC_CACHE"])) >= 2
    code, _, err = gen("cello", "-o", "b.wav", "--seed", "1")
    assert code == 0, err
    assert err.count("damaged entry in the embedding cache") == 1
    assert np.array_equal(audio(tmp_path / "a.wav"), audio(tmp_path / "b.wav"))


def _samples(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(decoded audio, final float32 latent) of the clip `name` in `folder`."""
    from safetensors.torch import load_file

    latent = load_file(str(folder / f"{name}.latent.safetensors"))["latent"].numpy()
    return sf.read(folder / f"{name}.wav", dtype="int16")[0], latent


def test_a_clip_has_the_same_samples_whatever_the_embedding_cache_held(
    gen, run_cli, tiny_bundle, monkeypatch, tmp_path
):
    # The prompt and the negative prompt are encoded in one pass when neither is stored, one
    # of them alone when the other is: each must come out the same either way.
    args = ("cello and bells", "--seed", "1", "--save-latent")
    cache = Path(os.environ["FLUXMUSIC_CACHE"])
    assert gen(*args, "-o", "cold.wav")[0] == 0
    assert gen(*args, "-o", "warm.wav")[0] == 0
    assert _zero_embeddings(cache, prompt="cello and bells") == 2  # T5's and CLAP's
    code, _, err = gen(*args, "-o", "damaged.wav")
    assert code == 0 and "damaged entry" in err, err
    code, _, err = run_cli(["cache", "rm", "--all", "--yes"])
    assert code == 0, err
    assert gen(*args, "-o", "refreshed.wav")[0] == 0
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(tmp_path / "other-cache"))
    assert gen("a different prompt", "--seed", "1", "-o", "other.wav")[0] == 0
    assert gen(*args, "-o", "after-other.wav")[0] == 0
    (tmp_path / "rows.csv").write_text(
        "name,prompt,seed\nfirst,cello and bells,1\nsecond,a different prompt,1\n"
    )
    code, _, err = run_cli(["batch", "rows.csv", "-o", "rows", "--save-latent",
                            *tiny_bundle.cli_args(), *FAST])  # fmt: skip
    assert code == 0, err
    cold = _samples(tmp_path, "cold")
    assert np.abs(cold[0]).max() > 0
    for folder, name in ((tmp_path, "warm"), (tmp_path, "damaged"), (tmp_path, "refreshed"),
                         (tmp_path, "after-other"), (tmp_path / "rows", "first")):  # fmt: skip
        audio_, latent = _samples(folder, name)
        assert np.array_equal(audio_, cold[0]), name
        assert np.array_equal(latent, cold[1]), name


def test_temporary_files_of_a_killed_cache_writer_are_cleaned(gen, tmp_path):
    from fluxmusic_cli import atomic

    assert gen("cello", "-o", "a.wav", "--seed", "1")[0] == 0
    folder = Path(os.environ["FLUXMUSIC_CACHE"]) / "embeddings" / "prompts"
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    own = atomic.temp_path(folder / "x.safetensors")
    left = own.with_name(own.name.replace(f".{os.getpid()}-", f".{dead}-"))
    left.write_bytes(b"half an embedding")
    assert gen("a new prompt", "-o", "b.wav", "--seed", "1")[0] == 0
    assert not left.exists()


def test_a_local_encoder_whose_weights_change_is_encoded_again(gen, run_cli, tiny_bundle, tmp_path):
    import shutil

    from fluxmusic_cli.tinybundle.text import write_tiny_t5

    t5 = tmp_path / "my-t5"
    shutil.copytree(tiny_bundle.t5, t5)
    args = ["--t5", str(t5), "--seed", "1"]
    assert gen("cello", "-o", "a.wav", *args)[0] == 0
    fresh = write_tiny_t5(tmp_path / "other-t5", seed=7)
    for name in ("model.safetensors",):
        src = fresh / name
        shutil.copyfile(src, t5 / name)
        st = (tiny_bundle.t5 / name).stat()
        os.utime(t5 / name, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime
    assert gen("cello", "-o", "b.wav", *args)[0] == 0
    assert not np.array_equal(audio(tmp_path / "a.wav"), audio(tmp_path / "b.wav"))


# -- 6. through the hub: a refreshed encoder, a damaged conversion ---------------------------


@pytest.fixture
def hub(monkeypatch, tiny_bundle):
    server = serve_tiny_bundle(start_fake_hub(monkeypatch), tiny_bundle)
    yield server
    server.stop()


def test_refreshed_t5_weights_are_not_answered_from_the_old_embeddings(
    hub, monkeypatch, run_cli, tmp_path
):
    from fluxmusic_cli.tinybundle.text import write_tiny_t5

    monkeypatch.chdir(tmp_path)
    assert run_cli(["generate", "cello", "-o", "a.wav", "--seed", "1", "--yes", *FAST])[0] == 0
    hub.add(registry.T5_SOURCES[registry.DEFAULT_T5].repo_id,
            folder_files(write_tiny_t5(tmp_path / "t5-new", seed=7)))  # fmt: skip
    code, _, err = run_cli(["download", "t5", "--refresh", "--yes"])
    assert code == 0, err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run_cli(["generate", "cello", "-o", "b.wav", "--seed", "1", *FAST])[0] == 0
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(tmp_path / "fresh-cache"))
    assert run_cli(["generate", "cello", "-o", "c.wav", "--seed", "1", *FAST])[0] == 0
    assert np.array_equal(audio(tmp_path / "b.wav"), audio(tmp_path / "c.wav"))
    assert not np.array_equal(audio(tmp_path / "a.wav"), audio(tmp_path / "b.wav"))


def test_a_zeroed_converted_checkpoint_is_converted_again(hub, monkeypatch, run_cli, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert run_cli(["generate", "cello", "-o", "a.wav", "--seed", "1", "--yes", *FAST])[0] == 0
    (converted,) = (Path(os.environ["FLUXMUSIC_CACHE"]) / "converted").glob("*.safetensors")
    data = bytearray(converted.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = bytes(len(data) - header)  # every weight zero, the file still loads
    converted.write_bytes(bytes(data))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["generate", "cello", "-o", "b.wav", "--seed", "1", *FAST])
    assert code == 0, err
    assert "converted checkpoint" in err and "damaged" in err
    assert np.array_equal(audio(tmp_path / "a.wav"), audio(tmp_path / "b.wav"))
    assert json.loads((tmp_path / "b.json").read_text())["model"]["file"].endswith(".safetensors")


def test_a_zeroed_eval_cache_entry_is_recomputed(run_cli, tmp_path, monkeypatch):
    from fluxmusic_cli.tinybundle.eval_models import write_tiny_cnn14

    monkeypatch.chdir(tmp_path)
    (tmp_path / "gen").mkdir()
    t = np.arange(16000) / 16000
    for i in range(10):  # IS needs ten clips (one per split)
        sf.write(tmp_path / "gen" / f"c{i}.wav", 0.3 * np.sin(2 * np.pi * 300 * (i + 1) * t), 16000)
    args = ["eval", "gen", "--metrics", "is", "--json",
            "--panns-weights", str(write_tiny_cnn14(tmp_path / "cnn14.pth"))]  # fmt: skip
    code, out, err = run_cli(args)
    assert code == 0, err
    first = json.loads(out)
    assert first["metrics"]
    entries = list((Path(os.environ["FLUXMUSIC_CACHE"]) / "eval-embeddings").rglob("*.npz"))
    assert entries
    for entry in entries:
        with np.load(entry, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        np.savez(entry, **{k: (v * 0 if v.dtype.kind == "f" else v) for k, v in arrays.items()})
    code, out, err = run_cli(args)
    assert code == 0, err
    assert "damaged entry in the evaluation cache" in err
    again = json.loads(out)
    assert again["metrics"] == first["metrics"] and again["per_file"] == first["per_file"]
