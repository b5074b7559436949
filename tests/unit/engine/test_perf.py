import pytest
import torch

from fluxmusic_cli.engine import perf
from fluxmusic_cli.errors import UsageError

# Two sockets x two cores x two hyper-threads; the process may use CPUs 0-7.
_CPUINFO = "\n\n".join(
    f"processor\t: {cpu}\nphysical id\t: {cpu // 4}\ncore id\t\t: {cpu % 2}\nflags\t\t: avx2"
    for cpu in range(8)
)


def test_physical_cores_counts_hyperthread_siblings_once():
    assert perf.physical_cores(_CPUINFO, allowed=set(range(8))) == 4


def test_physical_cores_only_counts_cpus_the_process_may_use():
    assert perf.physical_cores(_CPUINFO, allowed={0, 1}) == 2
    assert perf.physical_cores(_CPUINFO, allowed={0, 2}) == 1


def test_physical_cores_falls_back_to_logical_cpus_without_topology():
    assert perf.physical_cores("processor\t: 0\n\nprocessor\t: 1\n", allowed={0, 1, 2}) == 3


def test_choose_threads_prefers_explicit_then_env_then_cores(monkeypatch):
    monkeypatch.setattr(perf, "physical_cores", lambda: 6)
    monkeypatch.setattr(perf, "max_threads", lambda: 8)  # this machine may have fewer CPUs
    assert perf.choose_threads(3, env={"OMP_NUM_THREADS": "2"}) == 3
    assert perf.choose_threads(None, env={"OMP_NUM_THREADS": "2"}) == 2
    assert perf.choose_threads(None, env={"OMP_NUM_THREADS": "junk"}) == 6
    assert perf.choose_threads(None, env={}) == 6


def test_a_thread_count_above_the_cpus_this_process_may_use_is_refused(monkeypatch):
    monkeypatch.setattr(perf, "max_threads", lambda: 4)
    assert perf.choose_threads(4, env={}) == 4
    with pytest.raises(UsageError, match="more than the 4 CPUs"):
        perf.choose_threads(100000, env={})


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_choose_threads_rejects_non_positive_counts(bad):
    with pytest.raises(UsageError):
        perf.choose_threads(bad, env={})


def test_configure_threads_sets_torch_intra_op_threads():
    before = torch.get_num_threads()
    try:
        assert perf.configure_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_maybe_compile_disabled_returns_the_model_itself():
    model = torch.nn.Linear(2, 2)
    assert perf.maybe_compile(model, False) is model


def test_compiled_model_falls_back_to_eager_and_reports_why():
    model = torch.nn.Linear(3, 2)
    messages = []

    def broken(*args, **kwargs):
        raise RuntimeError("inductor: no working C++ compiler\nlong traceback")

    wrapped = perf.CompiledModel(model, broken, messages.append)
    x = torch.randn(4, 3)
    assert torch.equal(wrapped(x), model(x))
    assert not wrapped.active
    assert messages == [wrapped.fallback_reason]
    assert "no working C++ compiler" in messages[0] and "long traceback" not in messages[0]
    # Attribute access reaches the eager module, as `model_velocity` needs.
    assert next(wrapped.parameters()) is model.weight
    wrapped(x)
    assert len(messages) == 1


def test_maybe_compile_reports_when_torch_compile_cannot_be_set_up(monkeypatch):
    def refuse(model, mode=None):
        raise RuntimeError("dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refuse)
    messages = []
    model = torch.nn.Linear(2, 2)
    wrapped = perf.maybe_compile(model, True, on_fallback=messages.append)
    x = torch.randn(1, 2)
    assert torch.equal(wrapped(x), model(x))
    assert messages and "dynamo is not supported" in messages[0]


def test_maybe_compile_uses_the_compiled_callable_when_it_works(monkeypatch):
    calls = []

    def fake_compile(model, mode=None):
        def run(*args, **kwargs):
            calls.append(mode)
            return model(*args, **kwargs)

        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = torch.nn.Linear(2, 2)
    wrapped = perf.maybe_compile(model, True, mode="max-autotune")
    wrapped(torch.randn(1, 2))
    assert wrapped.active and calls == ["max-autotune"]


class _Blocky(torch.nn.Module):
    """Names its repeated blocks the way diffusers models do."""

    _repeated_blocks = ["Linear"]

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

    def compile_repeated_blocks(self, **kwargs):
        for module in self.modules():
            if type(module).__name__ in self._repeated_blocks:
                module.compile(**kwargs)


def test_a_model_with_repeated_blocks_is_compiled_block_by_block(monkeypatch):
    compiled = []

    def fake_compile(fn, mode=None):
        compiled.append(fn.__self__)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = _Blocky()
    wrapped = perf.maybe_compile(model, True)
    x = torch.randn(1, 2)
    assert torch.equal(wrapped(x), model(x))
    assert wrapped.scope == "blocks" and compiled == [model.a, model.b]


def test_a_failing_block_falls_back_to_a_fully_eager_model(monkeypatch):
    def broken(fn, mode=None):
        def run(*args, **kwargs):
            raise RuntimeError("inductor: unsupported op")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    messages = []
    model = _Blocky()
    wrapped = perf.maybe_compile(model, True, on_fallback=messages.append)
    x = torch.randn(1, 2)
    out = wrapped(x)
    assert messages and "unsupported op" in messages[0] and wrapped.scope is None
    assert torch.equal(out, model(x))
    # Every block runs eagerly again (a block left compiled would raise here), and the model
    # does not fall back a second time.
    assert torch.equal(model.a(x), torch.nn.functional.linear(x, model.a.weight, model.a.bias))
    assert torch.equal(wrapped(x), out) and len(messages) == 1
