"""Summarise a mutmut run: survivors by module into mutants/REPORT.md, then the score as the last line.

    python -m devtools.mutation_report      (after `mutmut run`; `make mutate` runs both)

The score counts killed mutants (including those a timeout stopped) out of every mutant that was run.
Survivors judged equivalent, log-wording-only or pinned by a slow test are listed in
devtools/mutation_equivalents.txt with the reason; the report shows every survivor with its reason (or
NOT EXPLAINED), and they all still count against the score.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {1, 3, -24, 24, 36, 152, 255}  # failing tests, or stopped by a timeout
SURVIVED = {0}
NOT_RUN = {None, 5, 33, 34}  # not checked, no covering tests, skipped


def covers(entry: str, name: str) -> bool:
    """Tell whether an equivalents entry (a mutant name, or a prefix ending in `*`) names this mutant."""
    return name.startswith(entry[:-1]) if entry.endswith("*") else name == entry


def reason_for(name: str, known: dict[str, str]) -> str:
    """Return the recorded reason for a survivor (exact name first, then the longest `prefix*`)."""
    if name in known:
        return known[name]
    prefixes = [p for p in known if p.endswith("*") and covers(p, name)]
    return known[max(prefixes, key=len)] if prefixes else ""


def equivalents() -> dict[str, str]:
    path = ROOT / "devtools" / "mutation_equivalents.txt"
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            entries[name] = reason.strip()
    return entries


def main() -> int:
    results: dict[str, int | None] = {}
    for meta in sorted((ROOT / "mutants").glob("*.py.meta")):
        results.update(json.loads(meta.read_text())["exit_code_by_key"])
    if not results:
        print("no mutmut results: run `mutmut run` first", file=sys.stderr)
        return 1
    known = equivalents()
    by_module: dict[str, Counter] = {}
    survivors: list[str] = []
    for name, code in sorted(results.items()):
        module = name.split(".")[0]
        tally = by_module.setdefault(module, Counter())
        if code in KILLED:
            tally["killed"] += 1
        elif code in SURVIVED:
            tally["survived"] += 1
            survivors.append(name)
        elif code in NOT_RUN:
            tally["not run"] += 1
        else:
            tally["other"] += 1
    killed = sum(t["killed"] for t in by_module.values())
    run = killed + len(survivors) + sum(t["other"] for t in by_module.values())
    lines = [
        "# Mutation testing: survivors by module",
        "",
        "| module | killed | survived | not run |",
        "| --- | --- | --- | --- |",
    ]
    for module, tally in sorted(by_module.items()):
        lines.append(f"| {module} | {tally['killed']} | {tally['survived']} | {tally['not run']} |")
    lines += ["", "## Survivors", ""]
    for name in survivors:
        diff = subprocess.run(
            [str(Path(sys.executable).parent / "mutmut"), "show", name],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
        changed = [
            ln for ln in diff.splitlines() if ln.startswith(("-", "+")) and not ln.startswith(("---", "+++"))
        ]
        reason = reason_for(name, known) or "NOT EXPLAINED"
        lines.append(f"- `{name}` ({reason}): " + " / ".join(f"`{c.strip()[:100]}`" for c in changed[:2]))
    stale = [entry for entry in known if not any(covers(entry, name) for name in survivors)]
    if stale:  # killed since, or their code is gone: the list should not explain what no longer survives
        lines += ["", "## Equivalents entries that name no survivor (remove them)", ""]
        lines += [f"- `{entry}`" for entry in stale]
    report = ROOT / "mutants" / "REPORT.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    explained = sum(1 for name in survivors if reason_for(name, known))
    print(
        f"{len(survivors)} survivors, {explained} explained (equivalent, log wording or a slow test): "
        f"{report.relative_to(ROOT)}"
    )
    if stale:
        print(f"{len(stale)} entries of devtools/mutation_equivalents.txt name no survivor: see the report")
    if not run:
        print("error: mutmut ran no mutants; run `.venv/bin/mutmut run` to see why", file=sys.stderr)
        return 1
    print(f"mutation score: {killed / run * 100:.1f}% ({killed} killed of {run})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
