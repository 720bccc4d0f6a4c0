"""bench.store_cost applies every group it measures, with either kind of id."""

from __future__ import annotations

import re

import pytest

from bench import store_cost
from memory.models import new_id

UUID4 = re.compile(r"^run-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.mark.parametrize("old_ids", [False, True])
def test_every_group_lands_and_is_measured(old_ids: bool) -> None:
    per_group = store_cost.measure(2_000, 3, 40, old_ids)  # raises if the tables miss a turn
    assert len(per_group) == 3 and all(us > 0 for us in per_group)


def test_old_ids_are_random_from_their_first_bit() -> None:
    old = [store_cost.old_id("run") for _ in range(200)]
    assert all(UUID4.match(i) for i in old)
    assert len({i[4:8] for i in old}) > 100  # no shared time prefix, where new ids share one
    assert len({i[4:8] for i in (new_id("run") for _ in range(200))}) == 1
