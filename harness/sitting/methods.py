"""How one round's sides take turns: lock-step slices in a balanced random order, or a duet on disjoint cores.

- **lock-step**: the sides run short slices of back-to-back inferences (tens of milliseconds) one at a time; one
  slice of every side is a *block*, and the slices of a block ran within a few hundred milliseconds of each other,
  so the machine's drift hits them alike. The order within a block is random and balanced: in every run of N
  blocks (N sides) each side goes first once (a Latin square of a random permutation, its rows in random order),
  so no side is always the one that runs on a CPU another has just warmed. With two sides this is ab's "random
  within each block of two pairs".

  Every side of a round runs on the same cores (`shared_cores`), drawn at random per round, where the sides need
  fewer than the machine has and their threads are all the CPU they use (the CPU runtimes; the rounds decide).
  A virtual machine's CPUs do not run at one speed: a neighbour on the host slows one vCPU for a while, and a side
  the scheduler left on it reads slower than one on the other, for as long as the placement lasts. Measured on
  the 2-vCPU development VM (mobilenet_v2 96x96, one thread; three sides, 12 rounds of fresh workers, ten
  sittings of each kind interleaved): an A/A pair's round log-ratio spread by 7.8 % (SD) left to the scheduler
  and 5.3 % on one shared core; A against A slowed by 5 %, 8.9 % and 4.5 %.
- **duet** (two sides only): both at once, each pinned to its own half of the cores, paired by time window (Bulej
  et al., ICPE 2020).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

METHODS = ("lockstep", "duet")


def block_orders(rng: np.random.Generator, names: list[str], blocks: int) -> list[list[str]]:
    """The order of the sides in each of ``blocks`` blocks (rounded up to a multiple of the number of sides):
    random, from the seeded generator, and balanced in every run of len(names) blocks."""
    count = len(names)
    orders: list[list[str]] = []
    for _ in range(-(-blocks // count)):
        first = [names[i] for i in rng.permutation(count)]
        rotations = [first[shift:] + first[:shift] for shift in range(count)]
        orders += [rotations[i] for i in rng.permutation(count)]
    return orders


def slice_orders(rng: np.random.Generator, pairs: int) -> list[bool]:
    """Two sides' block orders as ab records them: whether the base side goes first in each pair."""
    return [order[0] == "base" for order in block_orders(rng, ["base", "new"], pairs)]


def shared_cores(rng: np.random.Generator, threads: list[int | None]) -> list[int] | None:
    """The CPUs every lock-step side of a round is pinned to: as many physical cores as the side with the most
    threads uses (one CPU of each, so no two of its threads share a core's execution units), drawn at random; None
    (the scheduler's choice) where a side's threads are the runtime's default, or where the sides need every core
    anyway (pinning them all to all of them changes nothing), or where the system offers no CPU affinity."""
    if not hasattr(os, "sched_getaffinity") or not threads:
        return None
    if any(not isinstance(count, int) or isinstance(count, bool) or count < 1 for count in threads):
        return None
    cores = physical_cores(sorted(os.sched_getaffinity(0)))
    need = max(int(count) for count in threads if count is not None)
    if need >= len(cores):
        return None
    chosen = rng.choice(len(cores), size=need, replace=False)
    return sorted(cores[int(index)][0] for index in chosen)


def physical_cores(cpus: list[int]) -> list[list[int]]:
    """The logical CPUs grouped by physical core (Linux's topology files; one group per CPU where they are missing)."""
    groups: dict[str, list[int]] = {}
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            siblings = str(cpu)
        groups.setdefault(siblings, []).append(cpu)
    return list(groups.values())


def duet_cores(threads: dict[str, int | None]) -> tuple[list[int], list[int]] | str:
    """Two disjoint halves of the physical cores this process may use, or why a duet cannot run here. Whole cores:
    two hyperthreads of one core share its execution units, so a slower side would slow the other. ``threads``:
    each side's threads setting (it must fit its half)."""
    if not hasattr(os, "sched_getaffinity"):
        return "a duet pins each side to its own cores, and this system offers no CPU affinity (Linux does)"
    cores = physical_cores(sorted(os.sched_getaffinity(0)))
    half = len(cores) // 2
    if half < 1:
        return "a duet runs the sides on disjoint cores and this machine offers one"
    first = [cpu for core in cores[:half] for cpu in core]
    second = [cpu for core in cores[half:2 * half] for cpu in core]
    for side, count in threads.items():
        if not isinstance(count, int) or count > len(first):
            return (f"a duet runs each side on {half} of the {len(cores)} cores: set the {side} side's threads "
                    f"to at most {len(first)} (it is {count if count is not None else 'the runtime default'})")
    return first, second
