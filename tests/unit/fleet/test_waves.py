"""Wave arithmetic: canary first, percentages of the whole rollout, the last wave takes the rest."""

from __future__ import annotations

import pytest

from schoolgate.fleet.waves import WaveSpecError, parse_specs, plan_waves

SCHOOLS = [f"school-{i:03d}" for i in range(1, 201)]


def test_default_three_waves_over_200_schools():
    waves = plan_waves(SCHOOLS, parse_specs())
    assert [w.name for w in waves] == ["canary", "early", "rest"]
    assert [len(w.hosts) for w in waves] == [1, 19, 180]
    assert [w.max_fail_percentage for w in waves] == [0, 10, 20]
    assert [h for w in waves for h in w.hosts] == SCHOOLS  # every school exactly once, in order


def test_canary_group_goes_first_and_is_not_repeated():
    waves = plan_waves(SCHOOLS[:10], parse_specs("1,100%", "0,30"), first=["school-007", "not-a-school"])
    assert waves[0].hosts == ["school-007"]
    assert "school-007" not in waves[1].hosts and len(waves[1].hosts) == 9


def test_small_fleet_skips_empty_waves_and_never_drops_a_school():
    waves = plan_waves(["a", "b"], parse_specs("1,5,50%,100%", "0"))
    assert [w.hosts for w in waves] == [["a"], ["b"]]
    assert all(w.max_fail_percentage == 0 for w in waves)  # the last max-fail value repeats


def test_last_wave_takes_the_rest_even_if_sized_smaller():
    waves = plan_waves(SCHOOLS[:10], parse_specs("2,3", "0,10"))
    assert [len(w.hosts) for w in waves] == [2, 8]


@pytest.mark.parametrize(
    ("sizes", "fails", "needle"),
    [
        ("", "0", "--waves is empty"),
        ("1,0%", "0", "'0%'"),
        ("x", "0", "'x'"),
        ("1", "101", "'101'"),
        ("1", "", "--max-fail is empty"),
    ],
)
def test_bad_specs_name_the_option(sizes, fails, needle):
    with pytest.raises(WaveSpecError, match=needle):
        parse_specs(sizes, fails)
