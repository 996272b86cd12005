"""Mutation testing of the core modules: how many planted bugs the tests catch.

mutmut (the ``mutation`` extra) plants one small change at a time (an
operator flipped, a constant moved, an argument dropped) in the functions
named below, runs the tests that call the function, and counts the change
as killed when a test fails (or times out, as mutmut counts it). The score
is killed / all, per module and overall; survivors listed in
``docs/mutation-survivors.md`` as equivalent (they change no behaviour) are
shown apart from the ones nobody explained yet.

Run it from the repository root, before and after touching those modules::

    .venv/bin/pip install -e ".[dev,mutation]"
    .venv/bin/python benchmarks/mutation.py                # every module
    .venv/bin/python benchmarks/mutation.py --module voting --module "cache keys"
    .venv/bin/python benchmarks/mutation.py --resume       # only what the last run left untested
    .venv/bin/python benchmarks/mutation.py --no-run       # the score of the last run

mutmut's configuration (the files copied with trampolines, the tests it may
run) is ``[tool.mutmut]`` in ``pyproject.toml``; its work goes to
``mutants/`` (ignored by git). ``mutmut show NAME`` prints a mutant's diff,
``mutmut browse`` walks them. Slow: see docs/contributing.md for the time
and the last score. Exits 0 either way, printing PASS or FAIL for the
target (>= 90 % killed, no unexplained survivor).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SURVIVORS = ROOT / "docs" / "mutation-survivors.md"
TARGET = 0.90

# The functions that carry each module's behaviour, as mutmut names them:
# "<module>.x_<function>__mutmut_<n>" and "<module>.xǁ<Class>ǁ<method>__mutmut_<n>".
# Left out: argument checks whose only output is an error message, warnings,
# progress output and the HTML around the report's numbers.
MODULES: dict[str, tuple[str, ...]] = {
    "cache keys": (
        "skorchlite.cache.entries.x_*",
        "skorchlite.cache.namespace.x__check_key__*",
        "skorchlite.cache.namespace.xǁCacheNamespaceǁ_entry__*",
        "skorchlite.cache.namespace.xǁCacheNamespaceǁ_claim_file__*",
        "skorchlite.cache.store.xǁEmbeddingCacheǁnamespace__*",
        "skorchlite.images.x_content_key__*",
        "skorchlite.images.x__file_key__*",
        "skorchlite.images.x__bytes_key__*",
        "skorchlite.images.x__rgb_key__*",
    ),
    "preprocessing": (
        "skorchlite.pixels.x_*",
        "skorchlite.engine.x_resize_short_side__*",
        "skorchlite.engine.x_crop_pixels__*",
        "skorchlite.engine.x_to_input__*",
        "skorchlite.engine.x_forward__*",
        "skorchlite.backbones.backbone.xǁPreprocessingǁresized__*",
    ),
    "fingerprint": (
        "skorchlite.extractor.xǁPretrainedFeatureExtractorǁ_fingerprint__*",
        "skorchlite.extractor.xǁPretrainedFeatureExtractorǁ_check_unchanged__*",
        "skorchlite.extractor.x__check_format__*",
        "skorchlite.backbones.backbone.x__fingerprint__*",
        "skorchlite.backbones.backbone.xǁBackboneǁfingerprint__*",
    ),
    "finetune targets": (
        "skorchlite.finetune.targets.x_encode_labels__*",
        "skorchlite.finetune.targets.x_loss_weights__*",
        "skorchlite.finetune.targets.x__label_weights__*",
        "skorchlite.finetune.targets.x__class_weights__*",
    ),
    "finetune loop": (
        "skorchlite.finetune.loop.x_fine_tune_phases__*",
        "skorchlite.finetune.loop.xǁTrainerǁrun__*",
        "skorchlite.finetune.loop.xǁTrainerǁ_restore__*",
        "skorchlite.finetune.loop.xǁTrainerǁ_run_phase__*",
        "skorchlite.finetune.loop.xǁTrainerǁ_validate__*",
    ),
    "duplicates": (
        "skorchlite.duplicates.x__exact_pairs__*",
        "skorchlite.duplicates.x__unit__*",
        "skorchlite.duplicates.x__merge__*",
        "skorchlite.duplicates.x__pixel_pairs__*",
        "skorchlite.duplicates.x__grey_pairs__*",
        "skorchlite.duplicates.x__near_pairs__*",
        "skorchlite.duplicates.x__thumbnails__*",
        "skorchlite.duplicates.x__box_weights__*",
        "skorchlite.duplicates.x__unit_rows__*",
        "skorchlite.duplicates.xǁDuplicatesǁduplicate_groups__*",
    ),
    "voting": (
        "skorchlite.voting.x__columns__*",
        "skorchlite.voting.xǁLayerVotingClassifierǁ_widths__*",
        "skorchlite.voting.xǁLayerVotingClassifierǁ_log_votes__*",
        "skorchlite.voting.xǁLayerVotingClassifierǁpredict_proba__*",
        "skorchlite.voting.xǁLayerVotingClassifierǁpredict__*",
    ),
    "strategies": (
        "skorchlite.strategies.x__take__*",
        "skorchlite.strategies.x__frozen__*",
        "skorchlite.strategies.xǁStrategyComparisonǁchosen__*",
        "skorchlite.strategies.xǁStrategyComparisonǁranking__*",
    ),
    "evaluate numbers": (
        "skorchlite.cli.evaluate.x__cross_validate__*",
        "skorchlite.cli.evaluate.x__scores__*",
        "skorchlite.cli.evaluate.x__format_confusion_matrix__*",
    ),
    "report numbers": (
        "skorchlite.report.sections.x__average__*",
        "skorchlite.report.sections.x__curve_areas__*",
    ),
}

# mutmut's exit codes (mutmut.stats.status_by_exit_code); every other code is "suspicious".
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout"}
STATUS |= {code: "timeout" for code in (-24, 24, 152, 255)} | {-11: "crashed", -9: "crashed", None: "not run"}
# mutmut's own score counts a timeout as a kill: the mutant hung a test (a loop that no longer ends).
CAUGHT = {"killed", "timeout"}


def listed_equivalent() -> dict[str, str]:
    """The survivors docs/mutation-survivors.md explains, by mutant name: ``| `name` | reason |``."""
    if not SURVIVORS.is_file():
        return {}
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$", SURVIVORS.read_text(encoding="utf-8"), re.MULTILINE)
    return {name: reason.strip() for name, reason in rows}


def results() -> dict[str, int | None]:
    """Every mutant's exit code from mutmut's ``mutants/**/*.meta`` files (None: not run)."""
    codes: dict[str, int | None] = {}
    for meta in (ROOT / "mutants").rglob("*.py.meta"):
        codes |= json.loads(meta.read_text(encoding="utf-8")).get("exit_code_by_key", {})
    return codes


def module_of(name: str, modules: list[str]) -> str | None:
    return next((m for m in modules if any(fnmatch.fnmatch(name, p) for p in MODULES[m])), None)


def report(modules: list[str]) -> bool:
    """Print the score per module and overall; True when the target is met."""
    codes, equivalent = results(), listed_equivalent()
    counts: dict[str, Counter[str]] = {m: Counter() for m in modules}
    unexplained: list[str] = []
    for name, code in sorted(codes.items()):
        module = module_of(name, modules)
        if module is None:
            continue
        status = STATUS.get(code, "suspicious")
        if status == "survived" and name in equivalent:
            status = "equivalent"
        elif status not in CAUGHT:
            unexplained.append(f"{status}: {name}")
        counts[module][status] += 1
    counts["overall"] = sum(counts.values(), Counter())
    print(f"\n{'module':18} {'killed':>7} {'total':>6} {'score':>7}  {'equivalent':>10}  other")
    for module, c in counts.items():
        total, killed = sum(c.values()), sum(c[s] for s in CAUGHT)
        score = f"{killed / total:7.1%}" if total else "      -"
        other = ", ".join(f"{c[s]} {s}" for s in sorted(c) if s not in CAUGHT | {"equivalent"})
        timeouts = f" (of which {c['timeout']} timeout)" if c["timeout"] else ""
        print(f"{module:18} {killed:7d} {total:6d} {score}  {c['equivalent']:10d}  {other or '-'}{timeouts}")
    stale = sorted(n for n in equivalent if n in codes and module_of(n, modules) and codes[n] != 0)
    for name in stale:
        print(f"listed in {SURVIVORS.name} but not a survivor now (renumbered? remove it): {name}")
    for line in unexplained:
        print(f"not killed, not listed as equivalent: {line}")
    overall = counts["overall"]
    total = sum(overall.values())
    met = bool(total) and sum(overall[s] for s in CAUGHT) / total >= TARGET and not unexplained
    print(f"\n{'PASS' if met else 'FAIL'}: >= {TARGET:.0%} killed and every survivor listed as equivalent")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES), help="only these (repeatable)")
    parser.add_argument("--no-run", action="store_true", help="print the score of the last run only")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="test only the mutants the last run left untested or timed out (mutmut reruns every mutant it is named)",
    )
    parser.add_argument("--max-children", type=int, help="mutants tested at once (mutmut's default: the cores)")
    args = parser.parse_args()
    modules = args.module or list(MODULES)
    if not args.no_run:
        mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent))
        if mutmut is None:
            sys.exit('mutmut is not installed: .venv/bin/pip install -e ".[dev,mutation]"')
        names = [p for m in modules for p in MODULES[m]]
        if args.resume and (codes := results()):
            names = sorted(
                n for n, code in codes.items() if module_of(n, modules) and STATUS.get(code) in ("not run", "timeout")
            )
        command = [mutmut, "run", *names]
        if args.max_children:
            command[2:2] = ["--max-children", str(args.max_children)]
        # One thread per mutant's process: each is forked from a server that imported torch, and an
        # OpenMP pool started before a fork deadlocks the child (mutmut would count it a timeout).
        env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        start = time.perf_counter()
        if names:
            # mutmut's own exit status says nothing about the score; the .meta files do.
            subprocess.run(command, cwd=ROOT, env=env, check=False)
        print(f"\nmutmut ran {time.perf_counter() - start:.0f} s on {len(names)} names or patterns")
    report(modules)


if __name__ == "__main__":
    main()
