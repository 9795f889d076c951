"""The criterion objects of ``lightning_reg.core.stopping``: decisions, messages, state and errors, outside a Trainer,
and the same objects inside ``EarlyStopping`` on a real Trainer."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_early_stopping import fit, scripted

from lightning_reg import EarlyStopping
from lightning_reg.core.stopping import (
    CRITERIA,
    Criterion,
    GeneralizationLoss,
    Patience,
    ProgressQuotient,
    WorseningStrips,
    criterion_class,
    gl_stop,
    make_criterion,
    pq_stop,
    up_stop,
)
from lightning_reg.errors import ConfigError

NAN = float("nan")
PQ_VAL = [1.0, 0.8, 0.7, 0.72, 0.71, 0.73, 0.75, 0.77, 0.8, 0.8, 0.8, 0.8]
PQ_TRAIN = [1.0, 0.9, 0.8, 0.75, 0.7, 0.65, 0.64, 0.635, 0.63, 0.63, 0.63, 0.63]
UP_VAL = [1.0, 0.9, 0.8, 0.85, 0.7, 0.75, 0.78, 0.8, 0.85, 0.9, 0.95, 1.0]


def run(rule: Criterion, values, train=None, counted=None) -> list[str | None]:
    """The reason the rule gives at every check."""
    train = [None] * len(values) if train is None else train
    counted = [True] * len(values) if counted is None else counted
    return [rule.update(v, t, counted=c) for v, t, c in zip(values, train, counted)]


def first(reasons: list[str | None]) -> tuple[int, str] | None:
    return next(((i, r) for i, r in enumerate(reasons) if r is not None), None)


def stop_at(rule: Criterion, values, train=None, counted=None) -> tuple[int, str] | None:
    """Feed checks until the rule says stop (the rule is left at that check): (index, reason), or None."""
    train = [None] * len(values) if train is None else train
    counted = [True] * len(values) if counted is None else counted
    for i, (v, t, c) in enumerate(zip(values, train, counted)):
        reason = rule.update(v, t, counted=c)
        if reason is not None:
            return i, reason
    return None


# ---------------------------------------------------------------------------- decisions, by hand


def test_patience_counts_checks_since_the_last_improvement():
    rule = Patience(patience=3)
    assert stop_at(rule, [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9]) == (5, "patience")
    assert (rule.best_value, rule.wait_count) == (0.7, 3)
    assert rule.message() == "value did not improve in the last 3 checks."


def test_patience_min_delta_and_max_mode():
    # +0.005 is not an improvement with min_delta=0.01; accuracy is maximized.
    rule = Patience(patience=2, mode="max", min_delta=0.01, monitor="val/acc")
    assert stop_at(rule, [0.5, 0.6, 0.605, 0.609, 0.62]) == (3, "patience")
    assert rule.best_value == 0.6


def test_uncounted_checks_are_neither_recorded_nor_counted():
    # Keras' warm-up: the first counted check (0.6) is the first best value.
    values = [1.0, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    rule = Patience(patience=2)
    reasons = run(rule, values, counted=[i >= 4 for i in range(len(values))])
    assert first(reasons) == (6, "patience")
    assert rule.best_value == 0.6 and rule.history == [0.6, 0.6, 0.6]


def test_only_a_non_finite_value_stops_an_uncounted_check():
    rule = Patience(patience=0)
    assert rule.update(NAN, counted=False) == "non_finite" and rule.history == []
    assert Patience(patience=0, check_finite=False).update(NAN, counted=False) is None


def test_improving_checks_below_the_baseline_never_stop():
    # Keras' rule: the wait grows on every check that does not beat the baseline, but only a check that does
    # not improve can stop.
    values = [1.0, 0.9, 0.8, 0.7, 0.6, 0.55]
    for rule in (
        Patience(patience=3, baseline=0.5),
        GeneralizationLoss(alpha=5, patience=2, baseline=0.1),
        WorseningStrips(s=3, strip=1, patience=4, baseline=0.1),
    ):
        assert first(run(rule, values)) is None, rule
        assert rule.wait_count == len(values)
    rule = Patience(patience=3, baseline=0.5, monitor="val/loss")
    assert stop_at(rule, [*values, 0.56]) == (6, "baseline")
    assert rule.message() == "val/loss did not beat baseline 0.5 within 7 checks."


def test_baseline_deadline_fires_for_every_criterion():
    values = [1.0, 0.9, 0.8, 0.7, 0.6, 0.55]
    patience = Patience(patience=3, baseline=0.5, monitor="val/loss", baseline_deadline=True)
    assert stop_at(patience, values) == (2, "baseline")
    assert patience.message() == "val/loss did not beat baseline 0.5 within 3 checks."
    gl = GeneralizationLoss(alpha=5, patience=2, baseline=0.1, baseline_deadline=True)
    assert first(run(gl, values)) == (1, "baseline")
    up = WorseningStrips(s=3, strip=1, patience=4, baseline=0.1, baseline_deadline=True)
    assert first(run(up, values)) == (3, "baseline")


def test_baseline_beaten_then_plain_patience():
    rule = Patience(patience=3, baseline=0.5)
    assert stop_at(rule, [1.0, 0.45, 0.5, 0.5, 0.5, 0.5]) == (4, "patience")
    assert rule.baseline_beaten


def test_a_value_that_beats_the_baseline_without_improving_does_not_reset_the_wait():
    # min_delta 0.1: 0.45 improves on inf but not on the baseline 0.5; 0.38 beats the baseline but is not
    # 0.1 better than 0.45. The wait runs on from the first check, and patience (not baseline) fires.
    rule = Patience(patience=3, baseline=0.5, min_delta=0.1)
    assert stop_at(rule, [1.0, 0.45, 0.38, 0.39]) == (2, "patience")
    assert rule.baseline_beaten and rule.wait_count == 3


@pytest.mark.parametrize("alpha", [5, 8, 9])
def test_gl_object_agrees_with_the_pure_function(alpha):
    values = [1.0, 0.8, 0.7, 0.72, 0.74, 0.76]
    rule = GeneralizationLoss(alpha=alpha)
    reasons = run(rule, values)
    assert reasons == [("GL" if gl_stop(values[: t + 1], alpha) else None) for t in range(len(values))]
    assert any(reasons) == (alpha < 8.58)  # GL at the last check: 100 * (0.76 / 0.7 - 1) = 8.57


def test_gl_message_diagnostics_and_max_mode():
    rule = GeneralizationLoss(alpha=5.0, monitor="val/loss")
    assert stop_at(rule, [1.0, 0.8, 0.7, 0.72, 0.74]) == (4, "GL")
    assert rule.last_gl == pytest.approx(100 * (0.74 / 0.7 - 1))
    assert rule.message() == "Generalization loss GL = 5.714 > alpha = 5.0."
    assert rule.diagnostics() == {"wait": 2.0, "gl": pytest.approx(100 * (0.74 / 0.7 - 1))}
    acc = GeneralizationLoss(alpha=10.0, mode="max")
    # best 0.99, then 0.90: the best is 10 % higher (not more), then 0.89: 11.2 %.
    assert stop_at(acc, [0.9, 0.99, 0.90, 0.89]) == (3, "GL")


def test_pq_object_stops_at_the_strip_end_where_the_pure_function_does():
    reasons = run(ProgressQuotient(alpha=0.5, strip=3), PQ_VAL, PQ_TRAIN)
    expected = [("PQ" if pq_stop(PQ_VAL[: t + 1], PQ_TRAIN[: t + 1], 0.5, 3) else None) for t in range(len(PQ_VAL))]
    assert reasons == expected and first(reasons) == (8, "PQ")
    rule = ProgressQuotient(alpha=0.5, strip=3)
    assert stop_at(rule, PQ_VAL, PQ_TRAIN) == (8, "PQ")
    assert rule.message() == "Quotient GL/P_3 = 1.8 > alpha = 0.5 at the end of a strip."
    # the strip [0.64, 0.635, 0.63]: P_3 = 1000 * (1.905 / 1.89 - 1)
    assert rule.diagnostics() == {
        "wait": 6.0,
        "gl": pytest.approx(100 * (0.8 / 0.7 - 1)),
        "pk": pytest.approx(1000 * (1.905 / 1.89 - 1)),
    }


def test_pq_without_a_full_strip_of_training_values_logs_no_pk():
    rule = ProgressQuotient(alpha=0.5, strip=3)
    run(rule, [1.0, 0.9], [1.0, 0.9])
    assert "pk" not in rule.diagnostics()


@pytest.mark.parametrize(("s", "stop"), [(1, 7), (2, 9), (4, None)])
def test_up_object_agrees_with_the_pure_function(s, stop):
    rule = WorseningStrips(s=s, strip=2)
    reasons = run(rule, UP_VAL)
    assert reasons == [("UP" if up_stop(UP_VAL[: t + 1], s, 2) else None) for t in range(len(UP_VAL))]
    assert (first(reasons) or (None,))[0] == stop


def test_up_in_max_mode_and_its_diagnostics():
    rule = WorseningStrips(s=2, strip=1, mode="max", monitor="val/acc")
    assert stop_at(rule, [0.5, 0.6, 0.55, 0.5]) == (3, "UP")
    assert rule.diagnostics()["up"] == 2.0
    assert rule.message() == "val/acc got worse in 2 successive strips of 1 checks."


def test_a_non_finite_value_stops_unless_check_finite_is_off():
    assert run(GeneralizationLoss(alpha=5.0), [1.0, NAN]) == [None, "non_finite"]


def test_a_non_finite_value_is_recorded_never_improves_and_leaves_gl_undefined():
    rule = GeneralizationLoss(alpha=5.0, check_finite=False)
    assert run(rule, [1.0, NAN, 0.9]) == [None, None, None]
    assert rule.history[1] != rule.history[1] and rule.best_value == 0.9
    rule.update(math.inf)
    assert rule.last_gl is None and "gl" not in rule.diagnostics()


# ---------------------------------------------------------------------------- state


@pytest.mark.parametrize(
    "make",
    [
        lambda: Patience(patience=3, baseline=0.75),
        lambda: GeneralizationLoss(alpha=10.0),
        lambda: ProgressQuotient(alpha=0.5, strip=3),
        lambda: WorseningStrips(s=2, strip=2),
    ],
    ids=["patience", "GL", "PQ", "UP"],
)
@pytest.mark.parametrize("cut", [1, 4, 7])
def test_a_resumed_criterion_decides_like_the_uninterrupted_one(make, cut):
    full = run(make(), PQ_VAL, PQ_TRAIN)
    first_part = make()
    before = run(first_part, PQ_VAL[:cut], PQ_TRAIN[:cut])
    state = json.loads(json.dumps(first_part.state_dict()))  # plain numbers and lists only
    resumed = make()
    resumed.load_state_dict(state)
    after = run(resumed, PQ_VAL[cut:], PQ_TRAIN[cut:])
    assert before + after == full
    assert resumed.state_dict() == run_state(make(), PQ_VAL, PQ_TRAIN)


def run_state(rule: Criterion, values, train) -> dict:
    run(rule, values, train)
    return rule.state_dict()


def test_state_dict_keys_are_the_callbacks_checkpoint_keys():
    rule = Patience(patience=2)
    run(rule, [1.0, 0.9, 0.95])
    assert rule.state_dict() == {
        "history": [1.0, 0.9, 0.95],
        "train_history": [],
        "best_value": 0.9,
        "wait_count": 1,
        "baseline_beaten": True,
    }


def test_an_older_state_without_the_new_keys_loads_with_defaults():
    rule = Patience(patience=3, baseline=0.5)
    rule.load_state_dict({"wait_count": 2})  # Lightning's own EarlyStopping state has no history
    assert (rule.history, rule.wait_count, rule.best_value, rule.baseline_beaten) == ([], 2, math.inf, False)
    rule.reset()
    assert (rule.wait_count, rule.history) == (0, [])


# ---------------------------------------------------------------------------- registry and errors


def test_registry_maps_the_config_names_to_the_classes():
    assert dict(CRITERIA) == {
        "patience": Patience,
        "GL": GeneralizationLoss,
        "PQ": ProgressQuotient,
        "UP": WorseningStrips,
    }
    assert all(cls.name == name for name, cls in CRITERIA.items())
    assert criterion_class("pq") is ProgressQuotient and criterion_class("Up") is WorseningStrips
    assert make_criterion("gl", alpha=2).key_params() == {"alpha": 2.0}
    assert make_criterion("UP", s=2, strip=3).key_params() == {"s": 2, "strip": 3}  # state_key order
    assert make_criterion("PQ", alpha=1, strip=4).key_params() == {"alpha": 1.0, "strip": 4}


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: criterion_class(3), r"`criterion` must be one of 'patience', 'GL', 'PQ', 'UP'; got 3"),
        (lambda: Patience(patience=-1), r"`patience` must be an integer in \[0, inf\]; got -1"),
        (lambda: Patience(mode="auto"), r"`mode` must be one of 'min', 'max'; got 'auto'"),
        (lambda: Patience(min_delta="0.1"), r"`min_delta` must be a number"),
        (lambda: Patience(baseline_deadline="yes"), r"`baseline_deadline` must be true or false"),
        (lambda: Patience(baseline="high"), r"`baseline` must be a number"),
        (lambda: GeneralizationLoss(alpha=None), r"`alpha` must be a number > 0 for criterion 'GL'; got None"),
        (lambda: GeneralizationLoss(alpha=0), r"`alpha` must be in \(0.0, inf\]; got 0"),
        (lambda: ProgressQuotient(alpha=1.0, strip=0), r"`strip` must be an integer in \[1, inf\]; got 0"),
        (lambda: WorseningStrips(s=None), r"`s` \(successive worsening strips\) .* for criterion 'UP'; got None"),
        (lambda: WorseningStrips(s=1.5), r"`s` must be an integer; got 1.5"),
        (lambda: make_criterion("patience", alpha=-1), r"`alpha` must be in \(0.0, inf\]; got -1"),
        (lambda: make_criterion("GL", alpha=1, s=0), r"`s` must be an integer in \[1, inf\]; got 0"),
    ],
)
def test_bad_parameters_are_config_errors_naming_the_option(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_gl_and_pq_refuse_a_non_positive_value_at_the_check():
    rule = GeneralizationLoss(alpha=5.0, monitor="val/score")
    rule.update(1.0)
    with pytest.raises(ConfigError, match=r"needs a positive monitored value .* got val/score = -0.5"):
        rule.update(-0.5)
    assert WorseningStrips(s=1, strip=1).update(-0.5) is None  # UP has no ratio: negative values are fine


# ---------------------------------------------------------------------------- inside EarlyStopping


@pytest.mark.parametrize(
    ("kwargs", "values", "train"),
    [
        ({"patience": 3, "baseline": 0.75}, PQ_VAL, None),
        ({"criterion": "GL", "alpha": 5.0}, PQ_VAL, None),
        ({"criterion": "PQ", "alpha": 0.5, "strip": 3, "train_monitor": "train/scripted"}, PQ_VAL, PQ_TRAIN),
        ({"criterion": "UP", "s": 2, "strip": 2}, UP_VAL, None),
    ],
    ids=["patience", "GL", "PQ", "UP"],
)
def test_early_stopping_decides_as_its_criterion_object_does_outside_the_trainer(kwargs, values, train):
    es = EarlyStopping("val/score", **kwargs)
    trainer = fit(scripted(values, train_values=train), es, max_epochs=len(values))
    rule = make_criterion(
        kwargs.get("criterion", "patience"),
        **{k: v for k, v in kwargs.items() if k in ("alpha", "strip", "s", "patience", "baseline")},
        monitor="val/score",
    )
    # The module logs float32 values: feed the rule the same numbers.
    as_logged = [torch.tensor(values).tolist(), None if train is None else torch.tensor(train).tolist()]
    stop = stop_at(rule, *as_logged)
    assert stop is not None and (es.stopped_epoch, es.stop_reason) == stop
    assert trainer.current_epoch == stop[0] + 1
    assert es.stopping_reason_message.startswith(rule.message() + " Best val/score = ")
    assert es.rule.state_dict() == rule.state_dict() and es.history == rule.history


def test_callback_attributes_read_through_to_the_criterion():
    es = EarlyStopping("val/score", patience=3, alpha=2.0)
    assert isinstance(es.rule, Patience) and es.patience == es.rule.patience == 3
    assert not hasattr(es.rule, "alpha"), "an option the criterion does not use is checked, then dropped"
    fit(scripted([1.0, 0.9, 0.95, 0.96, 0.97]), es)
    assert (es.stop_reason, es.stopped_epoch) == ("patience", 4)
    assert es.history is es.rule.history and es.wait_count == es.rule.wait_count == 3
    assert es.best_score.item() == pytest.approx(0.9) and torch.is_tensor(es.best_score)
    es.wait_count = 1  # Lightning's attribute, writable as in Lightning
    assert es.rule.wait_count == 1
    gl = EarlyStopping("val/loss", criterion="GL", alpha=4.0)
    assert gl.rule.alpha == 4.0 and "'alpha': 4.0" in gl.state_key


def test_a_criterion_object_gets_the_callbacks_shared_options():
    rule = GeneralizationLoss(alpha=7.0, patience=99, mode="max")
    es = EarlyStopping("val/loss", criterion=rule, patience=4, min_delta=0.01)
    assert es.rule is rule and (rule.alpha, rule.patience, rule.mode, rule.min_delta) == (7.0, 4, "min", 0.01)
