"""Evaluate the mode selector on a corpus split: `ara-sidecar personas eval [PERSONA]`.

Every message goes through `select_mode` as a turn would (its time, its previous mode, no
forced mode), and is judged against its label:

- accuracy overall and per mode, and the confusion matrix (rows: label, columns: chosen);
- crisis recall: crisis messages that reached comfort as a crisis, overall and by language;
- hard-negative false-alarm rate: hard negatives taken for a crisis (any other message so
  taken is counted too, as "other false alarms");
- the latency of one `select_mode` call, p50 and p99 over all messages (after one warm-up).

`--cv` evaluates the training split by 5-fold cross-validation instead (each fold chosen by a
model fitted on the others; the crisis patterns were written from all of it, so its crisis
figures are optimistic, and the learned crisis head is off).

On the held-out split, messages are never printed (only figures), so that reading the
output cannot leak into rules; `--split train --errors` lists the training errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ara_persona.corpus import Sample, load_split
from ara_persona.model import MODE_NAMES, Persona
from ara_persona.selector import SELECTOR_DIR, select_mode


@dataclass
class Report:
    split: str
    samples: int = 0
    correct: int = 0
    per_mode: dict[str, list[int]] = field(default_factory=lambda: {m: [0, 0] for m in MODE_NAMES})
    confusion: dict[str, dict[str, int]] = field(
        default_factory=lambda: {a: dict.fromkeys(MODE_NAMES, 0) for a in MODE_NAMES}
    )
    crisis: list[int] = field(default_factory=lambda: [0, 0])  # detected, total
    crisis_by_lang: dict[str, list[int]] = field(default_factory=dict)  # language → detected, total
    hard_negative: list[int] = field(default_factory=lambda: [0, 0])  # alarms, total
    other_alarms: list[int] = field(default_factory=lambda: [0, 0])
    latency_ms: list[float] = field(default_factory=list)
    errors: list[tuple[Sample, str, str]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples if self.samples else 0.0

    def mode_accuracy(self, mode: str) -> float | None:
        ok, n = self.per_mode[mode]
        return ok / n if n else None

    def percentile(self, q: float) -> float:
        data = sorted(self.latency_ms)
        if not data:
            return 0.0
        return data[min(len(data) - 1, max(0, round(q / 100 * len(data) + 0.5) - 1))]

    def as_dict(self) -> dict:
        rate = lambda pair: pair[0] / pair[1] if pair[1] else None  # noqa: E731
        return {
            "split": self.split,
            "samples": self.samples,
            "accuracy": self.accuracy,
            "per_mode": {
                m: {"accuracy": self.mode_accuracy(m), "n": n} for m, (_, n) in self.per_mode.items()
            },
            "confusion": self.confusion,
            "crisis_recall": rate(self.crisis),
            "crisis_n": self.crisis[1],
            "crisis_recall_by_lang": {
                lang: {"recall": rate(pair), "n": pair[1]}
                for lang, pair in sorted(self.crisis_by_lang.items())
            },
            "hard_negative_false_alarm_rate": rate(self.hard_negative),
            "hard_negative_n": self.hard_negative[1],
            "other_false_alarm_rate": rate(self.other_alarms),
            "latency_ms": {
                "p50": self.percentile(50),
                "p99": self.percentile(99),
                "calls": len(self.latency_ms),
            },
        }


def evaluate(persona: Persona, split: str = "heldout", *, cv: bool = False) -> Report:
    """Run the selector over `split` of the persona's corpus; with `cv`, over the training split
    with each fold's messages chosen by a model fitted on the other folds (`fold_models`)."""
    if cv:
        from ara_persona.training import default_jobs, fold_models

        report = Report("train, cross-validated")
        for samples, data in fold_models(persona, jobs=default_jobs()):
            _run(report, persona, samples, data)
        return report
    report = Report(split)
    _run(report, persona, load_split(persona.directory / SELECTOR_DIR, split), None)
    return report


def _run(report: Report, persona: Persona, samples: list[Sample], data) -> None:
    if samples:  # warm-up: loads the data files
        select_mode(persona, samples[0].text, now=samples[0].time, data=data)
    for s in samples:
        start = time.perf_counter()
        choice = select_mode(persona, s.text, now=s.time, previous=s.previous, data=data)
        report.latency_ms.append((time.perf_counter() - start) * 1000)
        report.samples += 1
        report.per_mode[s.mode][1] += 1
        report.confusion[s.mode][choice.mode] += 1
        if choice.mode == s.mode:
            report.correct += 1
            report.per_mode[s.mode][0] += 1
        else:
            report.errors.append((s, choice.mode, choice.reason))
        if s.kind == "crisis":
            report.crisis[1] += 1
            report.crisis[0] += choice.crisis
            by_lang = report.crisis_by_lang.setdefault(s.lang, [0, 0])
            by_lang[1] += 1
            by_lang[0] += choice.crisis
        elif s.kind == "hard_negative":
            report.hard_negative[1] += 1
            report.hard_negative[0] += choice.crisis
        else:
            report.other_alarms[1] += 1
            report.other_alarms[0] += choice.crisis


def format_report(report: Report, *, errors: bool = False) -> str:
    pct = lambda v: "  –  " if v is None else f"{v * 100:5.1f}%"  # noqa: E731
    d = report.as_dict()
    lines = [
        f"split {report.split}: {report.samples} messages",
        f"accuracy      {pct(report.accuracy)}",
        *(f"  {m:<10}  {pct(report.mode_accuracy(m))}  (n={report.per_mode[m][1]})" for m in MODE_NAMES),
        f"crisis recall {pct(d['crisis_recall'])}  ({report.crisis[0]}/{report.crisis[1]})",
        "  by language: "
        + ", ".join(
            f"{lang} {pct(ok / n).strip()} ({ok}/{n})"
            for lang, (ok, n) in sorted(report.crisis_by_lang.items())
        ),
        f"hard-negative false alarms {pct(d['hard_negative_false_alarm_rate'])}  "
        f"({report.hard_negative[0]}/{report.hard_negative[1]}); other false alarms "
        f"{report.other_alarms[0]}/{report.other_alarms[1]}",
        f"latency per call: p50 {report.percentile(50):.2f} ms, p99 {report.percentile(99):.2f} ms",
        "",
        "confusion (rows: label, columns: chosen)",
        " " * 11 + "".join(f"{m[:9]:>10}" for m in MODE_NAMES),
        *(f"{a:<11}" + "".join(f"{report.confusion[a][b]:>10}" for b in MODE_NAMES) for a in MODE_NAMES),
    ]
    if errors and report.split != "heldout":
        lines += ["", "errors (label → chosen: message | reason)"]
        lines += [f"{s.mode} → {got}: {s.text[:100]} | {why}" for s, got, why in report.errors]
    return "\n".join(lines)
