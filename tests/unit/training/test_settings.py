"""The training settings refuse what no run can use, for callers other than the CLI too."""

from __future__ import annotations

import math

import pytest

from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.training.loop import TrainSettings


@pytest.mark.parametrize("lr", [math.inf, math.nan, -math.inf, 0.0, -1e-4, 1e30])
def test_a_learning_rate_that_is_not_a_positive_finite_number_is_refused(lr):
    with pytest.raises(UsageError, match="--lr must be above 0"):
        TrainSettings(lr=lr).check()


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.nan, math.inf])
def test_a_lora_alpha_that_is_not_a_positive_finite_number_is_refused(alpha):
    with pytest.raises(UsageError, match="--lora-alpha must be above 0"):
        TrainSettings(lora_alpha=alpha).check()


@pytest.mark.parametrize(
    "changed",
    [{"max_grad_norm": math.nan}, {"max_grad_norm": math.inf}, {"weight_decay": math.nan},
     {"batch_size": 1_000_001}, {"grad_accum": 4097}],
)  # fmt: skip
def test_other_numbers_out_of_their_range_are_refused(changed):
    with pytest.raises(UsageError):
        TrainSettings(**changed).check()


def test_the_defaults_and_the_bounds_themselves_pass():
    TrainSettings().check()
    TrainSettings(lr=1.0, lora_alpha=1e6, batch_size=1_000_000, grad_accum=4096).check()
