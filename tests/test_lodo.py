"""The leave-one-data-set-out selection of benchmarks/tabular.py (``lodo``) on made-up cached results whose
ranks are known: which candidate each fold chooses, the held-out ranks, the penalty per degree of freedom,
and the ranks with ties. No data set is read."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("tabular",
                                              Path(__file__).resolve().parents[1] / "benchmarks" / "tabular.py")
tabular = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tabular)

SETS = ["s0", "s1", "s2"]
OTHERS = tabular.PEERS + ["aelab-VAE", "aelab-PCA"]  # 12 detectors around the candidate


def auc_at_rank(rank: int) -> float:
    """An AUROC that ranks ``rank`` among the 12 others, whose AUROCs are 0.89, 0.88, ..., 0.78."""
    return 0.895 - 0.01 * (rank - 1)


def results(candidates: dict[str, list[int]]) -> dict:
    out = {d: {} for d in OTHERS + list(candidates)}
    for j, s in enumerate(SETS):
        for seed in range(3):
            key = f"{s}|contaminated|{seed}"
            for i, d in enumerate(OTHERS):
                out[d][key] = {"auc": 0.89 - 0.01 * i, "seconds": 0.1}
            for c, ranks in candidates.items():
                out[c][key] = {"auc": auc_at_rank(ranks[j]), "seconds": 1.0}
    return out


def test_each_fold_chooses_on_the_other_sets_and_scores_the_held_out_one():
    # A is best on s0 and s1 but 5th on s2; B is 2nd everywhere
    r = tabular.lodo(results({"aelab-AE:A": [1, 1, 5], "aelab-AE:B": [2, 2, 2]}), SETS, "contaminated",
                     dof={"aelab-AE:A": 0, "aelab-AE:B": 0})
    held = r["held_out"]
    # s0 out: A has (1 + 5) / 2 = 3 on the rest, B 2: B, ranked 2 on s0; s2 out: A has 1 < 2: A, ranked 5 on s2
    assert [held[s]["chosen"] for s in SETS] == ["aelab-AE:B", "aelab-AE:B", "aelab-AE:A"]
    assert [held[s]["rank"] for s in SETS] == [2, 2, 5]
    assert r["out_of_sample_mean_rank"] == pytest.approx(3.0)  # worse than either in-sample mean rank (2.33, 2)
    assert r["rank_std"] == pytest.approx(np.std([2, 2, 5], ddof=1))
    lo, hi = r["rank_boot_95"]
    assert 2 <= lo <= 3 <= hi <= 5
    rows = {c["candidate"]: c for c in r["candidates"]}
    assert rows["aelab-AE:A"]["mean_rank"] == pytest.approx(7 / 3) and rows["aelab-AE:B"]["mean_rank"] == 2
    assert rows["aelab-AE:A"]["chosen_share"] == pytest.approx(1 / 3)
    # the gap to the best peer (0.89): rank 2 sits 0.005 below it
    assert held["s0"]["gap"] == pytest.approx(auc_at_rank(2) - 0.89)


def test_the_penalty_per_degree_of_freedom_decides_between_near_candidates():
    res = results({"aelab-AE:plain": [2, 2, 2], "aelab-AE:rich": [2, 2, 1]})
    free = tabular.lodo(res, SETS, "contaminated", dof={"aelab-AE:plain": 0, "aelab-AE:rich": 0})
    assert {s["chosen"] for s in free["held_out"].values()} == {"aelab-AE:rich", "aelab-AE:plain"}
    # 6 extra degrees of freedom at 0.1 each outweigh its 0.5-rank advantage where s2 is among the other sets
    costly = tabular.lodo(res, SETS, "contaminated", dof={"aelab-AE:plain": 0, "aelab-AE:rich": 6})
    assert {s["chosen"] for s in costly["held_out"].values()} == {"aelab-AE:plain"}
    assert costly["out_of_sample_mean_rank"] == 2.0


def test_ranks_average_ties_and_others_are_ranked_against_the_chosen_one():
    field = np.array([[0.9, 0.5], [0.7, 0.5]])
    np.testing.assert_array_equal(tabular.ranks_of(np.array([0.7, 0.5]), field), [2.5, 2.0])
    r = tabular.lodo(results({"aelab-AE:A": [1, 1, 1]}), SETS, "contaminated", dof={"aelab-AE:A": 0})
    assert r["out_of_sample_mean_rank"] == 1.0 and r["first_share"] == 1.0
    assert r["others_mean_rank"][OTHERS[0]] == 2.0 and r["others_mean_rank"][OTHERS[-1]] == 13.0


def test_a_candidate_missing_a_set_is_left_out():
    res = results({"aelab-AE:A": [1, 1, 1], "aelab-AE:B": [1, 1, 1]})
    del res["aelab-AE:B"]["s1|contaminated|2"]
    r = tabular.lodo(res, SETS, "contaminated", dof={"aelab-AE:A": 0})
    assert r["incomplete"] == ["aelab-AE:B"] and [c["candidate"] for c in r["candidates"]] == ["aelab-AE:A"]
