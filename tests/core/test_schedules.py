"""Every schedule against its formula, evaluated without a Trainer, by step and by epoch."""

from __future__ import annotations

import math

import pytest

from lightning_reg.core.schedules import (
    SCHEDULES,
    Constant,
    Cosine,
    Curriculum,
    Early,
    Exponential,
    FromCallable,
    Late,
    Linear,
    Milestones,
    as_schedule,
    make_schedule,
)
from lightning_reg.errors import ConfigError

T = range(0, 40)


def test_constant_is_its_value_everywhere():
    s = Constant(0.3)
    assert [s(t) for t in T] == [0.3] * len(T)


def test_linear_matches_formula_including_before_and_after_the_ramp():
    s = Linear(start=0.1, end=0.5, begin=5, end_at=25)
    for t in T:
        frac = min(1.0, max(0.0, (t - 5) / 20))
        assert s(t) == pytest.approx(0.1 + 0.4 * frac, abs=1e-12)
    assert s(0) == 0.1 and s(5) == 0.1 and s(25) == 0.5 and s(39) == 0.5
    decay = Linear(start=0.4, end=0.0, begin=0, end_at=4)
    assert [decay(t) for t in range(6)] == pytest.approx([0.4, 0.3, 0.2, 0.1, 0.0, 0.0])


def test_cosine_matches_half_cosine_formula():
    s = Cosine(start=0.5, end=0.1, begin=2, end_at=12)
    for t in T:
        frac = min(1.0, max(0.0, (t - 2) / 10))
        assert s(t) == pytest.approx(0.1 + 0.4 * 0.5 * (1 + math.cos(math.pi * frac)), abs=1e-12)
    assert s(7) == pytest.approx(0.3)


def test_milestones_dict_is_value_of_largest_key_not_after_t():
    s = Milestones({0: 0.1, 5: 0.3, 10: 0.0}, unit="epoch")
    expected = [0.1] * 5 + [0.3] * 5 + [0.0] * 30
    assert [s(t) for t in T] == expected
    before_first = Milestones({3: 0.2}, initial=0.05)
    assert [before_first(t) for t in range(5)] == [0.05, 0.05, 0.05, 0.2, 0.2]


def test_milestones_list_multiplies_by_gamma_like_multisteplr():
    s = Milestones(milestones=[3, 6], initial=0.4, gamma=0.5)
    assert [s(t) for t in range(8)] == pytest.approx([0.4] * 3 + [0.2] * 3 + [0.1] * 2)


def test_exponential_matches_formula_and_floor():
    s = Exponential(start=0.5, gamma=0.9, begin=3, minimum=0.1)
    for t in T:
        assert s(t) == pytest.approx(max(0.1, 0.5 * 0.9 ** max(0, t - 3)), abs=1e-12)
    assert s(39) == 0.1


def test_early_constant_and_linear_modes():
    const = Early(p=0.2, cutoff=10)
    assert [const(t) for t in T] == [0.2] * 10 + [0.0] * 30
    lin = Early(p=0.2, cutoff=10, mode="linear")
    for t in T:
        assert lin(t) == pytest.approx(0.2 * (1 - t / 10) if t < 10 else 0.0, abs=1e-12)


def test_late_is_zero_until_cutoff_then_p():
    s = Late(p=0.25, cutoff=7)
    assert [s(t) for t in T] == [0.0] * 7 + [0.25] * 33


def test_curriculum_matches_morerio_formula():
    p, gamma = 0.4, 0.05
    s = Curriculum(p=p, gamma=gamma)
    theta_bar = 1 - p
    for t in T:
        theta = (1 - theta_bar) * math.exp(-gamma * t) + theta_bar
        assert s(t) == pytest.approx(1 - theta, abs=1e-12)
    assert s(0) == 0.0
    assert s(10_000) == pytest.approx(p)
    assert all(s(t) < s(t + 1) for t in T)  # rises monotonically towards p


def test_from_callable_and_its_stable_repr():
    def half_every_other(t):
        return 0.5 * (t % 2)

    s = FromCallable(half_every_other, unit="epoch")
    assert [s(t) for t in range(4)] == [0.0, 0.5, 0.0, 0.5]
    assert "half_every_other" in repr(s) and "0x" not in repr(s)


@pytest.mark.parametrize("unit", ["step", "epoch"])
def test_at_indexes_by_the_unit(unit):
    s = Late(p=0.3, cutoff=5, unit=unit)
    assert s.at(step=10, epoch=1) == (0.3 if unit == "step" else 0.0)
    assert s.at(step=1, epoch=10) == (0.0 if unit == "step" else 0.3)


def test_key_points_name_option_value_and_index_needed():
    assert Early(p=0.1, cutoff=5).key_points() == [("cutoff", 5, 5)]
    assert Late(p=0.1, cutoff=0).key_points() == [("cutoff", 0, 0)]
    assert Linear(0.0, 0.3, begin=2, end_at=10).key_points() == [("begin", 2, 2), ("end_at", 10, 9)]
    assert Cosine(0.3, 0.0, end_at=4).key_points() == [("begin", 0, 0), ("end_at", 4, 3)]
    assert Milestones({0: 0.1, 8: 0.0}).key_points() == [("milestones", 0, 0), ("milestones", 8, 8)]
    assert Exponential(0.5, 0.9, begin=3).key_points() == [("begin", 3, 3)]
    assert Constant(0.1).key_points() == [] and Curriculum(0.1).key_points() == []


def test_min_and_max_value():
    s = Linear(0.0, 0.5, end_at=10)
    assert s.max_value(20) == 0.5 and s.min_value(20) == 0.0
    assert Late(p=0.3, cutoff=10_000).max_value(10_000) == 0.3  # the horizon itself is probed


def test_make_schedule_by_every_registered_name():
    kwargs = {
        "constant": {"value": 0.1},
        "linear": {"start": 0.0, "end": 0.1, "end_at": 5},
        "cosine": {"start": 0.1, "end": 0.0, "end_at": 5},
        "milestones": {"values": {0: 0.1}},
        "step": {"milestones": [2], "initial": 0.1},
        "exponential": {"start": 0.1, "gamma": 0.9},
        "early": {"p": 0.1, "cutoff": 3},
        "late": {"p": 0.1, "cutoff": 3},
        "curriculum": {"p": 0.1},
        "callable": {"fn": lambda t: 0.1},
    }
    assert set(kwargs) == set(SCHEDULES)
    for name, kw in kwargs.items():
        s = make_schedule(name, **kw, unit="epoch")
        assert isinstance(s, SCHEDULES[name]) and s.unit == "epoch"
        assert 0.0 <= s(1) <= 0.1


def test_unknown_schedule_name_lists_the_allowed_names():
    with pytest.raises(ConfigError, match=r"`schedule` must be one of 'constant', .*'curriculum'.*got 'erly'"):
        make_schedule("erly", p=0.1, cutoff=3)


def test_wrong_schedule_argument_names_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"schedule 'early' \(Early\) takes the arguments p, cutoff, mode, unit"):
        make_schedule("early", prob=0.1, cutoff=3)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Early(p=0.1, cutoff=3, mode="cosine"), r"`mode` must be one of 'constant', 'linear'; got 'cosine'"),
        (lambda: Late(p=0.1, cutoff=3, unit="batch"), r"`unit` must be one of 'step', 'epoch'; got 'batch'"),
        (lambda: Linear(0.0, 0.1, begin=5, end_at=5), r"`end_at` must be greater than `begin` \(5\); got 5"),
        (lambda: Early(p=-0.1, cutoff=3), r"`p` must be in \[0.0, inf\]; got -0.1"),
        (lambda: Curriculum(p=0.1, gamma=0.0), r"`gamma` must be in \(0.0, inf\]; got 0.0"),
        (lambda: Milestones(), r"give exactly one of `values`"),
        (lambda: FromCallable(3), r"`fn` must be callable; got 3"),
    ],
)
def test_bad_schedule_arguments_name_option_and_value(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_as_schedule_accepts_every_documented_form():
    const = as_schedule(0.2, "s", unit="epoch")
    assert isinstance(const, Constant) and const.unit == "epoch" and const(5) == 0.2
    by_epoch = as_schedule({0: 0.1, 3: 0.0}, "s", unit="epoch")
    assert isinstance(by_epoch, Milestones) and by_epoch.unit == "epoch" and by_epoch(3) == 0.0
    named = as_schedule({"name": "late", "p": 0.2, "cutoff": 4}, "s", unit="epoch")
    assert isinstance(named, Late) and named.unit == "epoch"
    assert as_schedule({"name": "late", "p": 0.2, "cutoff": 4, "unit": "step"}, "s", unit="epoch").unit == "step"
    assert isinstance(as_schedule(lambda t: 0.0, "s"), FromCallable)
    s = Early(p=0.1, cutoff=2)
    assert as_schedule(s, "s") is s


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (True, r"`s` must be a number, a Schedule, a mapping or a callable; got True"),
        ("early", r"`s` must be a number, a Schedule, a mapping or a callable; got 'early'"),
        ({"p": 0.1}, r"`s` as a mapping needs a `name` key"),
        ({"name": "nope"}, r"`s.name` must be one of 'constant'.*got 'nope'"),
    ],
)
def test_as_schedule_rejects_bad_forms(value, match):
    with pytest.raises(ConfigError, match=match):
        as_schedule(value, "s")
