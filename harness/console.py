"""The terminal summary of a run, shared by the CLI and the pytest plugin.

Failed cases that were timed (a conversion that ran but missed its fidelity guard) print as red rows with their
numbers, so a fast wrong answer never reads as a win; the "best" lines count passed cases only, against the same
baseline the HTML report names (reporting/baseline.py). Where the run raced a group (race.jsonl), its answer and
speed-ups are the race's, worded as the report words them (reporting.numbers.speedup_text); elsewhere they are
labelled "sequential".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from model_zoo.targets import MIN_VALUES_FOR_COSINE
from reporting.baseline import (
    SEQUENTIAL,
    Speedup,
    answer_per_group,
    entry_speedup,
    entry_status,
    failure_label,
    race_outcome,
    race_pair_speedup,
    races_by_group,
    resolve_baselines,
    resolve_speedups,
)
from reporting.numbers import ab_figures, fmt_duration, fmt_number, speedup_text
from results.budgets import BudgetVerdict
from results.race_record import RaceRecord
from results.record import Record

STATUS_STYLE = {"passed": "green", "failed": "red", "invalid": "yellow", "skipped": "dim"}


def _mb(size_bytes: int | None) -> float | None:
    return size_bytes / 1e6 if size_bytes else None


def summary_table(records: list[Record], title: str = "accelbench results") -> Table:
    table = Table(title=title, header_style="bold", show_lines=False, pad_edge=False)
    for column, justify in (("case", "left"), ("status", "left"), ("p50 ms", "right"), ("p50 95% CI in run", "right"),
                            ("p99 ms", "right"), ("items/s", "right"), ("init ms", "right"),
                            ("1st ms", "right"), ("RSS MB", "right"), ("CPU %", "right"),
                            ("size MB", "right")):
        table.add_column(column, justify=justify, no_wrap=column == "case")
    for record in records:
        latency, ci, status = record.latency_ms, record.median_ci_ms, record.status
        table.add_row(
            escape(record.case_id) + (" \\[software GPU]" if record.software_gpu else "")
            + (" \\[not isolated]" if record.backend_info.get("isolation") else ""),
            f"[{STATUS_STYLE.get(status, '')}]{escape(failure_label(status, record.reason))}[/]",
            fmt_number(record.p50_ms),
            f"{fmt_number(ci.low)}–{fmt_number(ci.high)}" if ci else "-",
            fmt_number(latency.p99 if latency else None),
            fmt_number(record.throughput_ips),
            fmt_number(record.init_ms),
            fmt_number(record.first_inference_ms),
            fmt_number(record.peak_rss_mb),
            fmt_number(record.cpu_percent),
            fmt_number(_mb(record.model_size_bytes)),
            style="red" if status == "failed" else None,  # a failed case that was timed has numbers, not a result
        )
    return table


def best_table(records: list[Record], races: list[RaceRecord] | None = None) -> Table | None:
    """Per model and batch size (and mode where several): the configuration that answers "which one?", how it
    was chosen, its p50, speed-up against the baseline and fidelity; "no case passed" where none did.

    A raced group names a winner only when the race won; a tie lists the tied and shows the one recommended by
    the race's stated rule; "cannot tell" says so with the survivors. A group without a race shows the fastest
    passed case by its sequential p50, labelled so. INVALID, failed and skipped cases never count."""
    if not records:
        return None
    baselines = resolve_baselines(records)
    speedups = resolve_speedups(records, races, baselines)
    several_modes = len({r.mode for r in records}) > 1
    table = Table(title="fastest passing configuration", header_style="bold", pad_edge=False)
    for column in ("model", "batch", *(("mode",) if several_modes else ()), "best", "how chosen", "p50 ms",
                   "items/s", "speed-up", "fidelity"):
        table.add_column(column, justify="right" if column in ("batch", "p50 ms", "items/s") else "left",
                         no_wrap=column in ("model", "best"))
    models = list(dict.fromkeys(r.model for r in records))
    groups = sorted(answer_per_group(records, races).items(),  # model by model whatever order the cases ran in
                    key=lambda item: (models.index(item[0][1]), item[0][2] or 0, str(item[0][3])))
    for (_, model, batch, mode), answer in groups:
        head = [escape(str(model)), str(batch), *((escape(str(mode)),) if several_modes else ())]
        index = answer.index
        if index is None:
            table.add_row(*head, "[red]no case passed[/]", "-", "-", "-", "-", "-")
            continue
        best, base, gain = records[index], baselines[index], speedups[index]
        accuracy = best.accuracy
        judged = accuracy.judged()
        fidelity = [judged.text or "" if judged is not None else "",
                    f"top-1 {accuracy.top1:.4f}" if accuracy.top1 is not None else "", best.kept_fp32_text or ""]
        against = base.name if base is not None else (answer.race.baseline if answer.race else None)
        shown = speedup_text(gain)
        table.add_row(
            *head, escape(f"{best.label} {best.precision}"
                          + ("" if best.compression == "none" else f" {best.compression}")),
            escape(answer.note) if answer.raced else f"[dim]{escape(answer.note)}[/]",
            fmt_number(best.p50_ms), fmt_number(best.throughput_ips),
            escape(shown if gain is None or gain.is_baseline or not against else f"{shown} vs {against}"),
            ", ".join(f for f in fidelity if f) or "-",
        )
    return table


def _baseline_key(record: Record) -> tuple[Any, ...]:
    return (record.scenario, record.model, record.backend_label, record.batch_size, record.mode)


def _fp32_speedups(records: list[Record], races: list[RaceRecord] | None) -> list[Speedup | None]:
    """Each measured record's speed-up against the fp32 dense case of its model, backend, batch size and mode in
    this run: from the race where both raced (paired over the rounds they shared), else of sequential p50s."""
    group_speedups = resolve_speedups(records, races)
    by_group = races_by_group(races)
    references = {_baseline_key(r): i for i, r in enumerate(records)  # a failed fp32 case is no yardstick
                  if r.latency_ms and r.precision == "fp32" and r.compression == "none" and r.status != "failed"}
    result: list[Speedup | None] = []
    for index, record in enumerate(records):
        reference = references.get(_baseline_key(record))
        p50, base = record.p50_ms, None if reference is None else records[reference].p50_ms
        if reference is None or not base or not p50 or record.status == "failed":  # wrong answers: none
            result.append(None)
            continue
        if reference == index:
            result.append(Speedup(1.0, SEQUENTIAL, is_baseline=True))  # the fp32 case itself: the text says "fp32"
            continue
        race = by_group.get((record.scenario, record.model, record.batch_size, record.mode))
        mine = race.entry(record.case_id) if race is not None and race.status == "raced" else None
        theirs = race.entry(records[reference].case_id) if race is not None and race.status == "raced" else None
        paired = None
        if race is not None and mine is not None and theirs is not None:
            if theirs.is_baseline:  # the race's own figure against its baseline
                paired = group_speedups[index]
            elif mine.status in ("survived", "eliminated") and theirs.status in ("survived", "eliminated"):
                paired = race_pair_speedup(race, mine.name, theirs.name)
        result.append(paired or Speedup(base / p50, SEQUENTIAL))
    return result


def tradeoff_table(records: list[Record], races: list[RaceRecord] | None = None) -> Table | None:
    """Speed, size and accuracy side by side: what a precision or pruning buys and what it costs.

    The speed-up is against the fp32 dense case of the same model, backend, batch size and mode in this run: the
    race's paired ratio where both raced, else the ratio of sequential p50s, labelled so; "-" where that case was
    not measured, and for a failed case (one that was timed but misses its fidelity guard buys nothing): its row
    is red.
    """
    if not any(r.latency_ms and (r.accuracy.outputs or r.accuracy.error) for r in records):
        return None
    against_fp32 = _fp32_speedups(records, races)
    table = Table(title="speed / size / accuracy", header_style="bold", pad_edge=False,
                  caption="fidelity: the worst output by the metric that judged it (cos: mean per-sample cosine; "
                          f"rel L2: outputs of under {MIN_VALUES_FOR_COSINE} values; exact: integer outputs), with "
                          "its bar; top-1 agree: outputs holding class scores only; kept fp32: nodes a conversion "
                          "left in fp32, of those it could convert (int8: the nodes the quantizer changed; fp16: "
                          "every node); yellow: most of them")
    for column in ("case", "p50 ms", "× fp32", "size MB", "gzip MB", "sparsity", "top-1", "Δ top-1", "fidelity",
                   "top-1 agree", "max |err|", "kept fp32"):
        table.add_column(column, justify="left" if column == "case" else "right", no_wrap=column == "case")
    for record, gain in zip(records, against_fp32, strict=True):
        if not record.latency_ms:
            continue
        accuracy = record.accuracy
        sparsity = (record.artifact_meta or {}).get("sparsity")
        if isinstance(sparsity, dict):  # the zoo reports the pruned kernels' sparsity and all weights'
            sparsity = sparsity.get("pruned_kernels")
        drop = accuracy.top1_drop
        table.add_row(
            escape(record.case_id),
            fmt_number(record.p50_ms),
            escape(speedup_text(gain, reference="fp32")),
            fmt_number(_mb(record.model_size_bytes)),
            fmt_number(_mb(record.model_size_gzip_bytes)),
            f"{sparsity:.0%}" if isinstance(sparsity, int | float) else "-",
            f"{accuracy.top1:.4f}" if accuracy.top1 is not None else "-",
            f"{-drop + 0.0:+.4f}" if drop is not None else "-",  # + 0.0: no "-0.0000"
            escape(judged.text or "-") if (judged := accuracy.judged()) is not None else
            ("[red]error[/]" if accuracy.error else "-"),
            f"{accuracy.top1_agreement:.3f}" if accuracy.top1_agreement is not None else "-",
            f"{accuracy.max_abs_err:.3g}" if accuracy.max_abs_err is not None else "-",
            _kept_fp32_cell(record),
            style="red" if record.status == "failed" else None,  # its speed buys nothing: the answer is wrong
        )
    return table


def _kept_fp32_cell(record: Record) -> str:
    """"16/47 nodes": what a converted file's node search left fp32; yellow where that is most of them."""
    kept = record.kept_fp32
    if kept is None:
        return "-"
    cell = f"{kept[0]}/{kept[1]} nodes"
    return f"[yellow]{cell}[/]" if record.mostly_fp32 else cell


def race_table(races: list[RaceRecord]) -> Table:
    """Per raced group: the outcome, rounds, looks and time it took, and each configuration's status in the race
    (survived, eliminated after N rounds, excluded, not raced) with its speed-up against the baseline."""
    table = Table(title="races: each group's configurations measured together, in one sitting",
                  header_style="bold", pad_edge=False)
    for column in ("group", "outcome", "rounds", "looks", "time", "configuration", "status", "speed-up"):
        table.add_column(column, justify="right" if column in ("rounds", "looks", "time") else "left",
                         no_wrap=column in ("group", "configuration"))
    several_modes = len({race.mode for race in races}) > 1
    for race in races:
        group = f"{race.model} b{race.batch_size}" + (f" {race.mode}" if several_modes else "")
        rounds = f"{len(race.rounds)}" + (f" ({race.budget_rounds} for budgets)" if race.budget_rounds else "")
        head = [escape(group), escape(race_outcome(race)), rounds, str(len(race.looks)),
                fmt_duration(race.wall_s)]
        style = {"winner": "green", "tie": "", "cannot tell": "yellow"}.get(race.outcome or "", "dim")
        if not race.entries:
            table.add_row(*head, "-", "-", "-", style=style or None)
        for position, entry in enumerate(race.entries):
            table.add_row(*(head if position == 0 else [""] * len(head)), escape(entry.name),
                          escape(entry_status(entry)) + (" (baseline)" if entry.is_baseline else ""),
                          escape(speedup_text(entry_speedup(race, entry))),
                          style=(style or None) if position == 0 else None,
                          end_section=position == len(race.entries) - 1)
    return table


def races_line(races: list[RaceRecord]) -> str:
    """The time the races took, beside the results: "races: 10 groups in 2 min 31 s"."""
    raced = sum(race.status == "raced" for race in races)
    others = len(races) - raced
    line = f"races: {raced} group{'s' if raced != 1 else ''} in {fmt_duration(sum(race.wall_s for race in races))}"
    return line + (f" ({others} not raced)" if others else "")


PLAIN_PROGRESS_EVERY_S = 10.0


def progress_sink(console: Console, status: Any) -> Callable[[str], None]:
    """Where a long step's progress goes: the spinner's text on a terminal; plain lines elsewhere (a CI log, a file),
    where a spinner prints nothing at all. Plain lines come when the subject changes (the text before its first
    colon: "building [3/12] ppocr_det int8 onnx") and otherwise at most every PLAIN_PROGRESS_EVERY_S seconds."""
    if console.is_terminal:
        return lambda text: status.update(escape(text))
    last: dict[str, Any] = {"subject": None, "at": 0.0}

    def plain(text: str) -> None:
        subject, now = text.split(":", 1)[0], time.monotonic()
        if subject != last["subject"] or now - last["at"] >= PLAIN_PROGRESS_EVERY_S:
            console.print(escape(text), highlight=False, soft_wrap=True)
            last.update(subject=subject, at=now)

    return plain


def make_console(stderr: bool = False) -> Console:
    """A console that keeps the table readable when output is a pipe or a CI log (rich assumes 80 columns)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def print_summary(records: list[Record], run_dir: Any, console: Console | None = None,
                  report: Any = None, report_error: str | None = None,
                  races: list[RaceRecord] | None = None, budgets: list[BudgetVerdict] | None = None) -> None:
    """The run's tables and notes; ``races``: the run's race records (race.jsonl), whose paired ratios every
    speed-up then shows. Without them every speed-up is labelled "sequential". ``budgets``: the verdicts of the
    cases' performance budgets."""
    console = console or make_console()
    console.print(summary_table(records))
    if races:
        console.print(race_table(races))
    best = best_table(records, races)
    if best is not None:
        console.print(best)
    tradeoffs = tradeoff_table(records, races)
    if tradeoffs is not None:
        console.print(tradeoffs)
    if races:
        console.print(races_line(races), highlight=False)
    if budgets:
        console.print(budget_table(budgets))
    for record in records:
        if record.status != "passed" and record.reason:
            style = STATUS_STYLE.get(record.status, "")
            console.print(f"[{style}]{record.status}[/] {escape(record.case_id)}: {escape(record.reason)}",
                          highlight=False, soft_wrap=True)
    warned: dict[str, list[str | None]] = {}  # one line per model: every case of a model shares its reference
    for record in records:
        if record.accuracy.warning:
            warned.setdefault(record.accuracy.warning, []).append(record.model)
    software: dict[str, str] = {}  # the adapter behind each backend whose "GPU" numbers came from the CPU
    for record in records:
        if record.status == "passed" and record.software_gpu:
            software.setdefault(record.backend, record.backend_info.get("adapter") or "a software adapter")
    for backend, adapter in software.items():
        console.print(f"[yellow]note[/] {escape(backend)} ran on {escape(adapter)}, a SOFTWARE GPU adapter on the "
                      "CPU: its numbers are not GPU numbers", highlight=False, soft_wrap=True)
    for warning, models in warned.items():
        names = escape(", ".join(dict.fromkeys(map(str, models))))
        console.print(f"[yellow]note[/] {names}: {escape(warning)}", highlight=False, soft_wrap=True)
    counts = {status: sum(r.status == status for r in records) for status in STATUS_STYLE}
    line = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no cases"
    if budgets:  # a case can pass and miss its budget: the line says both
        judged = {status: sum(v.status == status for v in budgets) for status in BUDGET_STYLE}
        line += "; budgets: " + ", ".join(f"{n} {status}" for status, n in judged.items() if n)
    console.print(line, highlight=False)
    console.print(f"results: {escape(str(run_dir))}", highlight=False, soft_wrap=True)
    if report is not None:
        console.print(f"report: {escape(str(report))}", highlight=False, soft_wrap=True)
    if report_error:
        console.print(f"[red]error[/] {escape(report_error)}", highlight=False, soft_wrap=True)


BUDGET_STYLE = {"passed": "green", "missed": "bold red", "cannot tell": "yellow", "not judged": "yellow",
                "other machine": "dim"}


def budget_table(verdicts: list[BudgetVerdict]) -> Table:
    """One row per limit judged: the case, the budget, the verdict and the numbers beside the limit."""
    table = Table(title="performance budgets", header_style="bold", pad_edge=False)
    for column in ("case", "budget", "verdict", "figures"):
        table.add_column(column, no_wrap=column == "case", overflow="fold")
    for verdict in verdicts:
        status = verdict.status
        shown = status.upper() if status in ("missed", "cannot tell") else status
        if verdict.fails and status != "missed":
            shown += " (fails)"
        table.add_row(escape(verdict.case_id), escape(verdict.where),
                      f"[{BUDGET_STYLE.get(status, '')}]{escape(shown)}[/]", escape(verdict.message))
    return table


VERDICT_STYLE = {"slower": "bold red", "broken": "bold red", "missing": "yellow", "faster": "green", "unchanged": "",
                 "not comparable": "dim", "cannot tell": "yellow", "skipped": "dim"}


def compare_table(results: list[Any], base: str, new: str, threshold: float) -> Table:
    """`accelbench compare`: per case the medians, the change with its CI, the test and the verdict."""
    table = Table(title=f"{escape(new)} against {escape(base)} (threshold {threshold:.1%})", header_style="bold",
                  pad_edge=False)
    for column in ("case", "base p50 ms", "new p50 ms", "change", "95% CI", "p", "Cliff's δ", "needs", "verdict",
                   "accuracy"):
        table.add_column(column, justify="left" if column in ("case", "verdict", "accuracy") else "right",
                         no_wrap=column == "case")
    for result in results:
        timing = result.timing
        accuracy = ", ".join(f"{metric} {change['change']:+.4g} ({change['verdict']})"
                             for metric, change in result.accuracy.items() if change["verdict"] != "same")
        style = VERDICT_STYLE.get(result.verdict, "")
        table.add_row(
            escape(result.case_id), fmt_number(result.base_p50_ms, 4), fmt_number(result.new_p50_ms, 4),
            f"{timing.ratio - 1:+.2%}" if timing else "-",
            f"{timing.ci_low - 1:+.1%} … {timing.ci_high - 1:+.1%}" if timing else "-",
            f"{timing.p_value:.2g}" if timing else "-",
            f"{timing.cliffs_delta:+.2f}" if timing else "-",
            f"±{result.required_change:.1%}" if result.required_change is not None else "-",
            f"[{style}]{result.verdict}[/]" if style else result.verdict,
            escape(accuracy) or "-",
        )
    return table


def ab_table(records: list[Any], title: str = "accelbench ab: new / base, measured in one sitting") -> Table:
    """One row per A/B record: both sides' medians, the ratio with its interval, the test, what the rounds could
    detect (MDE), how many rounds and how long, and the verdict ("cannot tell" in yellow, never a silent pass)."""
    table = Table(title=title, header_style="bold", pad_edge=False)
    for column in ("case", "base ms", "new ms", "new/base", "95% CI", "p", "MDE", "rounds", "time s", "verdict"):
        table.add_column(column, justify="left" if column in ("case", "verdict") else "right",
                         no_wrap=column == "case")
    for record in records:
        verdict = record.verdict or record.status
        figures = ab_figures(record)
        style = VERDICT_STYLE.get(verdict, "red")  # refused, failed: red
        table.add_row(escape(record.case_id), figures["base_ms"], figures["new_ms"], figures["ratio"],
                      figures["interval"], figures["p"], figures["mde"], str(len(record.rounds)),
                      f"{record.wall_s:.0f}", f"[{style}]{escape(verdict)}[/]" if style else escape(verdict))
    return table
