"""How many looks a race plans, and how far apart: the statistics alone, on synthetic rounds (no machine in it).

A race's alpha is split over its planned looks (Bonferroni), so every planned look moves the first one later;
a look the race's time never reaches is alpha spent on nothing. This replays the race's driver
(tests/test_race_stats.py's run_race, on its make_rounds: per round a session bias per configuration, per block
a drift shared by all) for a few plans and prints, per plan:

- with A, an identical A' and B = A + 5 % (``sigma`` per session and round) and time for ``cap`` rounds: how
  often B leaves, how often a twin leaves (a false elimination), and the rounds used on average;
- with four identical configurations and every look taken (not stopping at a tie): races with any elimination.

    python benchmarks/race_looks.py [--races 1000]

Measured (1000 races each, seeds fixed; the figures quoted in results/race_stats.py and the README), B out with
two looks 2x apart (the default) / three looks 1.5x apart (before) / two looks 1.5x apart:
    sigma 3 %:  15 rounds 790 / 825 / 790;  20 rounds 960 / 951 / 811;  25 rounds 954 / 985 / 797
    sigma 4 %:  15 rounds 516 / 547 / 516;  20 rounds 773 / 733 / 506;  25 rounds 748 / 858 / 484
a twin out in 3-9 of 1000 in every setting; four identical configurations, any elimination: 2 / 6 / 2 of 1000.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results.race_stats import RacePlan
from tests.test_race_stats import make_rounds, run_race

PLANS = {"two looks 2x apart (the default)": RacePlan(looks=2, growth=2.0),
         "three looks 1.5x apart (before)": RacePlan(looks=3, growth=1.5),
         "two looks 1.5x apart": RacePlan(looks=2, growth=1.5)}


def five_per_cent(plan: RacePlan, races: int, sigma: float, cap: int) -> tuple[int, int, float]:
    """(B out, a twin out, mean rounds used) over ``races`` races of A, A' and B = A + 5 %."""
    rng = np.random.default_rng(5)
    b_out = twin_out = used = 0
    for _ in range(races):
        rounds = make_rounds(rng, {"A": 1.0, "A'": 1.0, "B": 1.05}, cap, sigma=sigma, blocks=2)
        _, _, eliminated, looks = run_race(rounds, ["A", "A'", "B"], plan, time_up_at=cap)
        b_out += "B" in eliminated
        twin_out += bool(eliminated & {"A", "A'"})
        used += looks[-1].rounds
    return b_out, twin_out, used / races


def null_rate(plan: RacePlan, races: int) -> int:
    """Races of four identical configurations, every planned look taken, with any elimination."""
    rng = np.random.default_rng(6)
    names = ["A", "B", "C", "D"]
    found = 0
    for _ in range(races):
        rounds = make_rounds(rng, dict.fromkeys(names, 1.0), plan.schedule(4)[-1], blocks=2)
        _, _, eliminated, _ = run_race(rounds, names, plan, stop_on_tie=False)
        found += bool(eliminated)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--races", type=int, default=1000)
    races = parser.parse_args().races
    for name, plan in PLANS.items():
        print(f"{name}: first look at {plan.schedule(3)[0]} rounds for three configurations")
        for sigma in (0.03, 0.04):
            for cap in (15, 20, 25):
                b_out, twin_out, used = five_per_cent(plan, races, sigma, cap)
                print(f"  sigma {sigma:.0%}, time for {cap} rounds: B out {b_out} of {races}, a twin out {twin_out}, "
                      f"{used:.1f} rounds on average")
        print(f"  four identical configurations, every look taken: {null_rate(plan, races)} of {races} races "
              f"eliminated something (alpha {plan.alpha:.0%})")


if __name__ == "__main__":
    main()
