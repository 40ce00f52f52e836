"""The statistics of a race: several configurations of one model measured together, the slow ones let go early.

A race is ``ab`` with N sides. Each *round* gives every configuration still in the race a fresh session, then
short slices in blocks: block b holds one slice of every configuration present, in random order, within about
100 ms, so the machine's drift hits them all alike. A round is ``{configuration: [slice median (ms) per
block]}``; a configuration not in a round (eliminated, or in another heat) is not a key of it. Two
configurations' round log-ratio is the median over their blocks of log(a / b), as ``ab``'s is the median over
its pairs; the rounds' log-ratios go to ``results.paired`` unchanged (Hodges-Lehmann ratio, exact signed-rank
interval and test, MDE), so a race and an ``ab`` of the same two files read the same.

Successive elimination (F-Race, Birattari et al. 2002; Hoeffding races, Maron & Moore 1994): at each *look*
the current best is found, every other configuration is tested against it, and one that is significantly
slower by at least the effect (half the threshold unless set) leaves, so a clearly slow configuration costs
only the first look's rounds and the time goes to the close contenders.

**Error control.** The race's ``alpha`` (0.01) bounds the chance of any false elimination (or of a false winner,
which needs one) over the whole race:

- *Repeated looks*, by Bonferroni over a fixed number of planned looks: each of the ``looks`` (2) looks tests at
  ``alpha / looks`` = 0.01 / 2 = 0.005, so the chance that any look errs is at most 2 × 0.005 = 0.01 (a union
  bound: no independence between looks is assumed). This holds because the rounds at which the looks fall do
  not depend on the ratios: they follow a fixed schedule (``look_schedule``), and a race whose time runs out
  early spends its next look then, which depends on the clock, not on the measurements. That look is the race's
  last, so it also takes the shares of the planned looks it will never reach (``RacePlan.look_level``: with no
  look taken yet, all of 0.01): the levels of the looks taken still add up to 0.01 at most. ``is_look`` never
  grants more than ``looks`` looks. Simpler than alpha-spending boundaries and valid whatever the dependence
  between looks. Two looks, the second at twice the first's rounds (or when the time runs out, if sooner):
  every planned look moves the first one later, and with 1.5 × between them a third look (at 26 rounds for four
  configurations) never came within a 45 s race. Simulated (benchmarks/race_looks.py, on the synthetic rounds of
  tests/test_race_stats.py: A, an identical A' and B 5 % slower, 3 % noise per session and round, 1000 races
  each), the two plans are about as strong, and the two looks cost fewer rounds: B left in 960 races with two looks
  2 × apart and 951 with three 1.5 × apart where time allows 20 rounds (17.4 rounds used on average against
  16.1), 790 against 825 at 15 rounds, 954 against 985 at 25; two looks 1.5 × apart fell to about 800. What
  decided it is the first look, a round earlier (9 rounds for two configurations instead of 10), where most
  races that have a clearly slower configuration end.
- *Several comparisons in one look*, by Holm-Bonferroni over the k - 1 comparisons against the current best at
  the look's level: the smallest p is tested at 0.005 / (k - 1), the next at 0.005 / (k - 2), and so on.
- *The minimum rounds follow*: the exact two-sided signed-rank test's smallest p is 2 / 2^n, so nothing can be
  eliminated before 2 / 2^n < level / (k - 1). With four configurations at 0.01 that is 10 rounds (2/1024 <
  0.0033, 2/512 is not); at the race's look level 0.005 it is 11 (2/2048 < 0.0017), the first look; 9 for two
  configurations, 10 for three.

One caveat, measured rather than assumed away: Holm's guarantee is for a fixed family of hypotheses, and the
current best is chosen from the same rounds, which tilts the comparisons against it towards "slower". With all
configurations equal, any elimination needs some pair of them to reach p <= level / (k - 1); there are
k (k - 1) / 2 pairs, so the strict bound is (k / 2) × alpha (2 % for four). Simulated (benchmarks/race_looks.py:
all equal, every look taken, not stopping at a tie), the rate stays well under alpha: 2 of 1000 races with four
configurations at alpha 0.01 (0.2 %; 6 of 1000 with three looks), and 2.6 % at alpha 0.1 with four or six; the pairs are
strongly dependent and the exact test is conservative, so the bound is far from reached. Holm over all
k (k - 1) / 2 pairs would make it strict, at about one more round for four configurations.

A *tie* is an equivalence statement instead: every pair of survivors has its 95 % interval within
±threshold (all pairs, since two configurations each 4 % from the best can be 8 % apart), as ``ab``'s
"unchanged". It is not part of the alpha above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from results.paired import PairedEstimate, paired_estimate, smallest_p

Round = dict[str, list[float]]

OUTCOMES = ("winner", "tie", "cannot tell", "continue")


def _block_log_ratios(round: Round, a: str, b: str) -> list[float]:
    """log(a / b) per block with both medians positive (a zero or negative median is a broken slice, not a
    speed)."""
    for name in (a, b):
        if name not in round:
            raise ValueError(f"{name!r} is not in this round (it holds {', '.join(sorted(round)) or 'nothing'})")
    a_ms, b_ms = round[a], round[b]
    if len(a_ms) != len(b_ms):
        # blocks pair by index: different counts mean they no longer say which slices ran together
        raise ValueError(f"{a!r} has {len(a_ms)} blocks and {b!r} {len(b_ms)} in the same round: blocks pair by "
                         "index, so every configuration of a round needs one median per block")
    return [math.log(x / y) for x, y in zip(a_ms, b_ms, strict=True) if x > 0 and y > 0]


def round_log_ratio(round: Round, a: str, b: str) -> float:
    """log(a / b) of one round: the median over its blocks of log(a_b / b_b), as ``ab``'s round is the median of
    its pairs' log-ratios. The median, not the mean, so that one slice hit by a stall does not move the round;
    blocks with a non-positive median are left out."""
    ratios = _block_log_ratios(round, a, b)
    if not ratios:
        raise ValueError(f"no block of this round has positive medians for both {a!r} and {b!r}")
    return _median(ratios)


def _median(values: list[float]) -> float:
    """The median of a short list, in plain Python: a round has a handful of blocks, and a race asks for
    thousands of these, where numpy's call overhead is most of the cost."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def pair_log_ratios(rounds: list[Round], a: str, b: str) -> list[float]:
    """log(a / b) of every round holding both (in heats, or after an elimination, some rounds hold only one of
    them); a round without one usable block for both is left out."""
    values = []
    for round in rounds:
        if a in round and b in round and (ratios := _block_log_ratios(round, a, b)):
            values.append(_median(ratios))
    return values


def pair_estimate(rounds: list[Round], a: str, b: str, alpha: float) -> PairedEstimate | None:
    """a against b over the rounds holding both, as ``ab`` estimates new against base: ratio > 1 means a is
    slower. ``alpha`` is the level the MDE is computed for. None with fewer than two common rounds (no spread,
    no interval)."""
    values = pair_log_ratios(rounds, a, b)
    if len(values) < 2:
        return None
    return paired_estimate(values, alpha=alpha)


def _hodges_lehmann_ratio(log_ratios: list[float]) -> float:
    """exp(median of the Walsh averages): the same point estimate as PairedEstimate.ratio, without its tests."""
    values = np.asarray(log_ratios, dtype=np.float64)
    walsh = (values[:, None] + values[None, :])[np.triu_indices(values.size)] / 2
    return math.exp(float(np.median(walsh)))


@dataclass(frozen=True)
class RacePlan:
    """How a race decides: what difference matters and how sure an elimination must be.

    ``alpha`` is the race's family-wise rate of a false elimination or false winner, over all looks and all
    comparisons (see the module's docstring for how it is split); ``looks`` how many times the race may be
    judged; ``growth`` how far apart the looks are (each at ``growth`` times the previous look's rounds)."""

    threshold: float = 0.05  # the difference that matters: survivors all within it are a tie
    # the slowdown an elimination needs at least; None: half the threshold. Above the threshold, a difference
    # between the two is neither a tie nor an elimination: the race ends "cannot tell"
    min_effect: float | None = None
    alpha: float = 0.01
    looks: int = 2
    growth: float = 2.0

    def __post_init__(self) -> None:
        """A plan from a scenario or the command line is checked here, so a bad one fails before any round."""
        if not (_is_number(self.threshold) and 0 < self.threshold < 1):
            raise ValueError(f"threshold is a share between 0 and 1 (5% = 0.05), not {self.threshold!r}")
        if self.min_effect is not None and not (_is_number(self.min_effect)
                                                and 0 <= self.min_effect < 1):
            raise ValueError(f"min_effect is a share from 0 up to 1 (2.5% = 0.025), or None for half the "
                             f"threshold, not {self.min_effect!r}")
        if not (_is_number(self.alpha) and 0 < self.alpha < 1):
            raise ValueError(f"alpha is a probability between 0 and 1 (0.01 = 1 %), not {self.alpha!r}")
        if isinstance(self.looks, bool) or not isinstance(self.looks, int) or self.looks < 1:
            raise ValueError(f"looks is a whole number of 1 or more, not {self.looks!r}")
        if not (_is_number(self.growth) and self.growth > 1):
            raise ValueError(f"growth must be a number above 1 (each look after more rounds than the last), not "
                             f"{self.growth!r}")

    @property
    def effect(self) -> float:
        """The slowdown an elimination needs: half the threshold by default, as ``compare`` and ``ab`` decide, so
        that a true difference of the threshold is caught even when noise makes it look smaller."""
        return self.threshold / 2 if self.min_effect is None else self.min_effect

    @property
    def look_alpha(self) -> float:
        """The level of each look: Bonferroni over the planned looks keeps the race's rate at ``alpha``."""
        return self.alpha / self.looks

    def look_level(self, looks_taken: int, last: bool = False) -> float:
        """The level of the next look after ``looks_taken``: its share, ``look_alpha``; the race's last look (its
        time spent, or its rounds: no look can follow) also takes the shares of the planned looks it will never
        reach, so that no part of ``alpha`` is left unspent when the race must end. The union bound still holds:
        the levels of the looks taken add up to ``alpha`` at most, and whether a look is the last depends on the
        clock, not on the ratios."""
        if looks_taken >= self.looks:
            raise ValueError(f"all {self.looks} planned looks are taken: no alpha is left for another")
        return self.alpha * ((self.looks - looks_taken) if last else 1) / self.looks

    def schedule(self, configs: int) -> list[int]:
        """The rounds at which the looks fall for a race of ``configs`` configurations: the first as soon as the
        exact test could eliminate anything at the look's level, the rest ``growth`` apart."""
        return look_schedule(min_rounds(configs, self.look_alpha), self.looks, self.growth)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def min_rounds(configs: int, level: float) -> int:
    """The fewest rounds at which anything can be eliminated: the smallest n with 2 / 2^n < level / (configs - 1).

    The exact two-sided signed-rank test's smallest p is 2 / 2^n (every round agreeing in sign), and Holm's first
    step tests at level / (k - 1); a look before that spends its share of alpha on nothing. Four configurations
    at 0.01 need 10 rounds, not the 8 one comparison needs."""
    if isinstance(configs, bool) or not isinstance(configs, int) or configs < 2:
        raise ValueError(f"a race has 2 or more configurations, not {configs!r}")
    if not (_is_number(level) and 0 < level < 1):
        raise ValueError(f"level is a probability between 0 and 1, not {level!r}")
    rounds = 2  # a spread needs two rounds
    while smallest_p(rounds) >= level / (configs - 1):
        rounds += 1
    return rounds


def look_schedule(first: int, looks: int, growth: float) -> list[int]:
    """The rounds done at each planned look: ``first``, then each ceil(previous × growth), strictly increasing.

    Fixed before the race, so that where the looks fall does not depend on what the rounds show (which the
    Bonferroni split over looks needs). Geometric, so that the later looks, when only close contenders are left,
    come after enough new rounds to change the answer."""
    if isinstance(first, bool) or not isinstance(first, int) or first < 2:
        raise ValueError(f"the first look needs 2 or more rounds, not {first!r}")
    if isinstance(looks, bool) or not isinstance(looks, int) or looks < 1:
        raise ValueError(f"looks is a whole number of 1 or more, not {looks!r}")
    if not (_is_number(growth) and growth > 1):
        raise ValueError(f"growth must be a number above 1, not {growth!r}")
    schedule = [first]
    while len(schedule) < looks:
        # rounded first, so that 10 × 1.1 = 11.000000000000002 is 11, not 12
        schedule.append(max(schedule[-1] + 1, math.ceil(round(schedule[-1] * growth, 9))))
    return schedule


def is_look(rounds_done: int, schedule: list[int], looks_taken: int, time_up: bool = False) -> bool:
    """Whether the driver judges the race now: when the next planned look's rounds are done, or when time is up
    and a look is left (taken at once, not wasted). Never once ``looks_taken`` reaches the planned number, so a
    driver that asks this before every look cannot spend more than its share of alpha. After the last planned
    look the race ends (``race_outcome(..., last_look=True)``)."""
    if looks_taken >= len(schedule) or rounds_done < 2:
        return False
    return time_up or rounds_done >= schedule[looks_taken]


def holm(p_values: dict[str, float], level: float) -> set[str]:
    """The names whose null Holm's step-down procedure rejects at family level ``level``.

    Sorted ascending, the i-th smallest (0-based) is rejected while p <= level / (m - i); the first that is not
    stops it. It keeps the chance of any false rejection at ``level`` as Bonferroni does (level / m for all), but
    once the strongest difference is taken out the others face a milder bar, which matters when several
    configurations are clearly slow. Ties in p are taken in the given order."""
    m = len(p_values)
    rejected: set[str] = set()
    for i, (name, p) in enumerate(sorted(p_values.items(), key=lambda item: item[1])):
        if not p <= level / (m - i):
            break
        rejected.add(name)
    return rejected


def current_best(rounds: list[Round], alive: list[str]) -> str:
    """The alive configuration with the lowest Hodges-Lehmann ratio against the pivot (the first of ``alive``,
    which the driver orders baseline first), over the rounds holding both; the pivot counts as ratio 1.

    One pivot for all, rather than a tournament, so that the choice is one ranking on one scale. Ties go to the
    earlier in ``alive``, so the baseline stays best unless another is measured faster. A configuration that
    shares no round with the pivot (a heat without it) cannot be named best."""
    if not alive:
        raise ValueError("current_best needs at least one configuration alive")
    pivot = alive[0]
    best, best_ratio = pivot, 1.0
    for name in alive[1:]:
        values = pair_log_ratios(rounds, name, pivot)
        if values and (ratio := _hodges_lehmann_ratio(values)) < best_ratio:
            best, best_ratio = name, ratio
    return best


@dataclass
class Look:
    """One judgement of the race: who is best, who leaves and why, and whether the survivors are a tie."""

    rounds: int  # rounds done at this look
    best: str
    estimates: dict[str, PairedEstimate]  # each other alive configuration against the best (ratio > 1: slower)
    p_values: dict[str, float]  # what Holm saw: each p floored at the exact test's smallest; 1 without an estimate
    level: float  # the look's level (plan.look_alpha), which Holm splits among the comparisons
    eliminated: dict[str, str]  # name -> why, in one line
    survivors: list[str]  # the alive ones that stay, in the given order
    pair_estimates: dict[tuple[str, str], PairedEstimate]  # (a, b) -> a against b, every pair of survivors
    tie: bool  # two or more survivors and every pair's 95 % interval within ±threshold
    spread: float | None  # the largest difference between two survivors (0.012 = 1.2 %); None: fewer than two
    plan: RacePlan


def judge_look(rounds: list[Round], alive: list[str], plan: RacePlan, level: float | None = None) -> Look:
    """Judge the race once, on all rounds so far: find the current best, test every other alive configuration
    against it (Holm at ``level``, by default ``plan.look_alpha``; ``plan.look_level`` says what the race's last
    look may spend), and let go those significantly slower by at least ``plan.effect`` (and whose interval lies
    above 1), as ``ab_verdict`` calls a side "slower". The MDEs are for the level of Holm's first step, the bar a
    single difference must clear."""
    if len(set(alive)) != len(alive) or not alive:
        raise ValueError(f"alive must name each configuration once, at least one: {alive!r}")
    if level is not None and not (_is_number(level) and 0 < level < 1):
        raise ValueError(f"level is a probability between 0 and 1, not {level!r}")
    best = current_best(rounds, alive)
    others = [name for name in alive if name != best]
    level = plan.look_alpha if level is None else level
    mde_alpha = level / max(1, len(others))
    estimates: dict[str, PairedEstimate] = {}
    p_values: dict[str, float] = {}
    for name in others:
        estimate = pair_estimate(rounds, name, best, mde_alpha)
        if estimate is None:
            p_values[name] = 1.0  # kept in Holm's count: a comparison not yet made is still one of the family
            continue
        estimates[name] = estimate
        # the exact test cannot go below 2 / 2^n; where ties send it to the normal approximation it could
        p_values[name] = max(estimate.p_value, smallest_p(estimate.rounds))
    rejected = holm(p_values, level)
    eliminated = {}
    for name in others:
        estimate = estimates.get(name)
        if (name in rejected and estimate is not None and estimate.ratio >= 1 + plan.effect
                and estimate.ci_low > 1):
            eliminated[name] = (f"slower than {best}: {_percent(estimate.ratio - 1)} [{estimate.ci_low:.2f}, "
                                f"{estimate.ci_high:.2f}], p = {estimate.p_value:.2g} over {estimate.rounds} rounds "
                                f"(Holm, this look at {level:.2g})")
    survivors = [name for name in alive if name not in eliminated]
    pairs: dict[tuple[str, str], PairedEstimate] = {}
    complete = True
    for i, first in enumerate(survivors):
        for second in survivors[i + 1:]:
            if first == best and second in estimates:
                pairs[(second, best)] = estimates[second]
            elif second == best and first in estimates:
                pairs[(first, best)] = estimates[first]
            elif (estimate := pair_estimate(rounds, second, first, mde_alpha)) is not None:
                pairs[(second, first)] = estimate
            else:
                complete = False  # no common rounds: nothing says they are close
    bound = 1 + plan.threshold
    tie = (len(survivors) >= 2 and complete
           and all(e.ci_high < bound and e.ci_low > 1 / bound for e in pairs.values()))
    spread = max((max(e.ratio, 1 / e.ratio) - 1 for e in pairs.values()), default=None)
    return Look(rounds=len(rounds), best=best, estimates=estimates, p_values=p_values, level=level,
                eliminated=eliminated, survivors=survivors, pair_estimates=pairs, tie=tie, spread=spread, plan=plan)


def race_outcome(look: Look, time_up: bool, last_look: bool = False) -> tuple[str, str]:
    """(outcome, why) after a look: "winner" when one survivor remains; "tie" when the survivors are all within
    the threshold of each other; "cannot tell" when the race must end undecided (time spent, or the last planned
    look taken: there is no alpha left for another), naming the survivors, the pair furthest from a tie, and the
    largest MDE reached, so that the user sees what more time could settle; else ("continue", "")."""
    survivors = look.survivors
    if len(survivors) == 1:
        out = "; ".join(f"{name} {why}" for name, why in look.eliminated.items())
        return "winner", f"{survivors[0]} is the last one left after {look.rounds} rounds" + (
            f" ({out})" if out else "")
    if look.tie:
        return "tie", (f"{_names(survivors)} within {_percent(look.spread or 0.0, sign=False)} of each other: "
                       f"every pair's 95 % interval lies within ±{_percent(look.plan.threshold, sign=False)} "
                       f"({look.rounds} rounds)")
    if not (time_up or last_look):
        return "continue", ""
    ended = "time budget spent" if time_up else f"all {look.plan.looks} looks taken"
    return "cannot tell", f"{ended}: {_undecided(look)}"


def _undecided(look: Look) -> str:
    """What stands between the survivors and a decision: their furthest pair and what the rounds could detect."""
    survivors = look.survivors
    present = list(look.pair_estimates.items())
    missing = [(a, b) for i, a in enumerate(survivors) for b in survivors[i + 1:]
               if (a, b) not in look.pair_estimates and (b, a) not in look.pair_estimates]
    parts = []
    if present:
        (a, b), estimate = max(present, key=lambda item: _reach(item[1]))
        ratio, low, high = estimate.ratio, estimate.ci_low, estimate.ci_high
        if ratio < 1:  # shown as the slower against the faster: the same estimate, inverted
            a, b, ratio, low, high = b, a, 1 / ratio, 1 / high, 1 / low
        furthest = ": " if len(survivors) == 2 else "; furthest apart, "
        parts.append(f"{_names(survivors)} undecided{furthest}{a} against {b} {_percent(ratio - 1)} "
                     f"[{low:.2f}, {high:.2f}]")
        mde = max(e.mde for _, e in present)
        if math.isfinite(mde):
            parts.append(f"the rounds could detect changes of {_percent(mde, sign=False)} or more")
        else:
            level = look.level / max(1, len(look.p_values))
            parts.append(f"{min(e.rounds for _, e in present)} rounds are too few for the exact test to reach "
                         f"p < {level:.2g} whatever the difference")
    else:
        parts.append(f"{_names(survivors)} undecided")
    if missing:
        parts.append("no rounds hold " + ", ".join(f"{a} and {b}" for a, b in missing) + " together")
    return "; ".join(parts)


def _reach(estimate: PairedEstimate) -> float:
    """How far the interval reaches from 1, either way, as a ratio >= 1 (inf: no interval yet)."""
    return max(estimate.ci_high, 1 / estimate.ci_low if estimate.ci_low > 0 else math.inf)


def recommend(tied: list[str], fidelity: dict[str, float | None],
              size_bytes: dict[str, int | None]) -> tuple[str, str]:
    """(name, why) of the one to use among tied configurations: the best fidelity score (higher is better; None,
    not measured, counts worst), then the smaller model file (None counts largest), then the given order.

    Speed cannot choose among a tie, so the rule turns to what still differs: fidelity first, since a user
    picking among equally fast configurations loses nothing by the closest outputs, then size on disk."""
    if not tied:
        raise ValueError("recommend needs at least one tied configuration")
    rule = "rule: better fidelity, then smaller file, then the order listed"
    if len(tied) == 1:
        return tied[0], f"the only one ({rule})"

    def key(name: str) -> tuple[float, float]:
        score, size = fidelity.get(name), size_bytes.get(name)
        return (-score if score is not None else math.inf, size if size is not None else math.inf)

    ranked = sorted(tied, key=key)  # stable: equal keys keep the given order
    chosen, runner_up = ranked[0], ranked[1]
    (score, size), (other_score, other_size) = key(chosen), key(runner_up)
    if score != other_score:
        why = f"better fidelity ({_fidelity_pair(fidelity.get(chosen), fidelity.get(runner_up))})"
    elif size != other_size:
        same = "same fidelity, " if fidelity.get(chosen) is not None else ""
        why = f"{same}smaller file ({_size_pair(size_bytes.get(chosen), size_bytes.get(runner_up))})"
    else:
        why = "listed first (same fidelity and file size)"
    return chosen, f"{why} ({rule})"


def _fidelity_pair(score: float | None, other: float | None) -> str:
    if other is None:
        return f"{score:.5f} against none measured"
    for digits in range(5, 10):  # enough digits to show the difference that decided it
        if f"{score:.{digits}f}" != f"{other:.{digits}f}":
            break
    return f"{score:.{digits}f} against {other:.{digits}f}"


def _size_pair(size: int | None, other: int | None) -> str:
    if other is None:
        return f"{_size(size)} against unknown"
    if _size(size) == _size(other):
        return f"{size:,} against {other:,} bytes"
    return f"{_size(size)} against {_size(other)}"


def _size(size: int | None) -> str:
    if size is None:
        return "unknown"
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def _percent(share: float, sign: bool = True) -> str:
    return f"{share * 100:+.1f} %" if sign else f"{share * 100:.1f} %"


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
