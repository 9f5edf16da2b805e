"""Merge the stages' outputs into summary.json and RESULTS_gpu.md; print the summary.

usage: report.py OUT WORKDIR STAGES.json DRY_RUN(0|1) TEST_BACKENDS

``OUT`` holds junit.xml (pytest) and receives the two files; ``WORKDIR`` holds
what the stages left (env.json, bench.md, train.txt, train.json, parity.json);
``STAGES.json`` maps each stage to ``{"rc", "seconds"}``. Tests are counted in
total and per backend id, the ids being the test suite's own
(``BACKEND_SPECS`` in ``tests/``) plus those in TEST_BACKENDS. On a
GPU, a green pytest stage in which no cupy or torch-cuda test passed is a
failure (exit 1): a suite that skipped every GPU test is green as well.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2] / "tests"
GPU_IDS = ("cupy", "torch-cuda")
MAX_FILES, MAX_BYTES, MAX_DEPTH = 8, 16 * 2**20, 3  # what the device tool hands back


def suite_backend_ids(tests_dir: Path = TESTS) -> set[str]:
    """The backend ids of the test suite's ``BACKEND_SPECS`` (``(id, name, device)`` rows).

    Read from the source, not imported: the report must not depend on pytest
    and the suite's imports working on the device.
    """
    for path in sorted(tests_dir.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and getattr(node.targets[0], "id", None) == "BACKEND_SPECS"):
                return {spec[0] for spec in ast.literal_eval(node.value)}
    print(f"  !! no BACKEND_SPECS in {tests_dir}: counting only the XPNET_TEST_BACKENDS ids")
    return set()


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _outcome(case) -> str:
    kinds = {child.tag for child in case}
    return "failed" if kinds & {"failure", "error"} else (
        "skipped" if "skipped" in kinds else "passed")


def count_tests(junit: Path, extra_ids=()) -> dict:
    """``{"tests": {"total"|id: {passed, failed, skipped}}, "gpu_skip_reasons": ...}``.

    A test counts for backend id ``b`` when ``b`` is a dash-separated part of
    its parameters (``test_x[cupy-float32]``); longer ids are matched first, so
    ``torch-cuda`` is not also counted as ``torch``.
    """
    ids = sorted(suite_backend_ids() | set(extra_ids), key=len, reverse=True)
    counts = {"total": {"passed": 0, "failed": 0, "skipped": 0}}
    reasons: dict = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = _outcome(case)
        counts["total"][outcome] += 1
        match = re.search(r"\[(.*)\]$", case.get("name", ""))
        params = match.group(1) if match else ""
        for bid in ids:
            pattern = r"(^|-)" + re.escape(bid) + r"(?=-|$)"
            if not re.search(pattern, params):
                continue
            counts.setdefault(bid, {"passed": 0, "failed": 0, "skipped": 0})[outcome] += 1
            params = re.sub(pattern, r"\1#", params)
            if outcome == "skipped" and bid in GPU_IDS:
                msg = next(c.get("message", "") for c in case if c.tag == "skipped")[:300]
                reasons.setdefault(bid, {}).setdefault(msg, 0)
                reasons[bid][msg] += 1
    return {"tests": counts, "gpu_skip_reasons": reasons}


def gate_gpu_tests(summary: dict) -> bool:
    """On a GPU: True (bad) if pytest was green but no cupy/torch-cuda test passed."""
    tests = summary.get("tests", {})
    if summary["mode"] == "dry-run" or "total" not in tests:
        return False
    ran = {bid: tests.get(bid, {}).get("passed", 0) for bid in GPU_IDS}
    summary["gpu_tests_passed"] = ran
    pytest_stage = summary["stages"].get("pytest", {})
    if str(pytest_stage.get("rc")) == "0" and min(ran.values()) == 0:
        pytest_stage["rc"] = "0 but no cupy/torch-cuda test passed"
        return True
    return False


def _machine_lines(env: dict, dry: bool) -> list[str]:
    return [f"## GPU run ({'DRY RUN, CPU only' if dry else env.get('gpu', '?')})", "",
            f"- GPU: {env.get('gpu', 'none')} ({env.get('gpu_memory_gib', '?')} GiB); "
            f"CUDA runtime {env.get('cuda_runtime', '?')}, driver {env.get('cuda_driver', '?')}",
            f"- Python {env.get('python', '?')}, numpy {env.get('numpy', '?')}, "
            f"cupy {env.get('cupy', 'n/a')}, torch {env.get('torch', 'n/a')} "
            f"(CUDA build {env.get('torch_cuda_build', 'n/a')}), "
            f"array-api-compat {env.get('array-api-compat', '?')}, xpnet {env.get('xpnet', '?')}",
            f"- TF32: CUPY_TF32={env.get('CUPY_TF32', '?')}, torch matmul allow_tf32="
            f"{env.get('torch_matmul_allow_tf32', '?')}", ""]


def _tests_lines(tests: dict) -> list[str]:
    total = tests.get("total")
    if not total:
        return []
    per = ", ".join(f"{b}: {c['passed']} passed/{c['failed']} failed/{c['skipped']} skipped"
                    for b, c in tests.items() if b != "total")
    return [f"- test suite: {total['passed']} passed, {total['failed']} failed, "
            f"{total['skipped']} skipped ({per})", ""]


def _bench_lines(bench_md: Path) -> list[str]:
    text = bench_md.read_text().strip() if bench_md.exists() else ""
    if not text:
        return []
    nested = ("#" + line if line.startswith("### ") else line for line in text.splitlines())
    return ["### Per-epoch time (benchmarks.mlp)", "", "\n".join(nested), ""]


def _train_lines(train: dict | None, train_txt: Path) -> list[str]:
    if not train:
        return []
    lines = [f"### Seed run (25 epochs unless noted: `xpnet train --backend {train['backend']} "
             f"{train['args']}`)", "", f"- wall time: {train['wall_s']:.1f} s (rc {train['rc']})"]
    if train_txt.exists():
        tail = [line for line in train_txt.read_text().splitlines() if line.strip()][-4:]
        lines += ["- last lines of its output:", "", "```", *tail, "```"]
    return lines + [""]


def _parity_lines(parity: dict | None) -> list[str]:
    if not parity:
        return []
    lines = ["### Saved model reloaded on other backends (MNIST test set)", "",
             "| backend | accuracy | class mismatches vs numpy | max rel. logit diff |",
             "| --- | --- | --- | --- |"]
    for spec, e in parity["backends"].items():
        if "error" in e:
            lines.append(f"| {spec} | error: {e['error'][:80]} | | |")
        else:
            lines.append(f"| {spec} | {e['accuracy']:.4f} | "
                         f"{e.get('class_mismatches_vs_numpy', '-')} | "
                         f"{e.get('max_rel_logit_diff', '-')} |")
    return lines + [""]


def results_markdown(summary: dict, workdir: Path) -> str:
    """The block to paste into benchmarks/results/gpu.md."""
    lines = _machine_lines(summary["env"] or {}, summary["mode"] == "dry-run")
    lines += _tests_lines(summary.get("tests", {}))
    lines += _bench_lines(workdir / "bench.md")
    lines += _train_lines(summary["train"], workdir / "train.txt")
    lines += _parity_lines(summary["parity"])
    return "\n".join(lines)


def print_summary(summary: dict, out: Path) -> None:
    env = summary["env"] or {}
    print("\n==================== summary ====================")
    print(f"mode: {summary['mode']}   GPU: {env.get('gpu', 'none')}")
    for name, stage in summary["stages"].items():
        print(f"  {name:<9} rc={stage['rc']!s:<8} {stage['seconds']:>4}s")
    tests = summary.get("tests", {})
    if "total" in tests:
        t = tests["total"]
        print(f"  tests: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped")
        for b, c in tests.items():
            if b != "total":
                print(f"    {b:<26} {c['passed']:>5} passed {c['failed']:>4} failed "
                      f"{c['skipped']:>5} skipped")
    for bid, msgs in summary.get("gpu_skip_reasons", {}).items():
        for msg, n in sorted(msgs.items(), key=lambda kv: -kv[1])[:3]:
            print(f"    {bid} skipped x{n}: {msg[:200]}")
    if summary["parity"]:
        par = summary["parity"]
        print(f"  same predictions on {', '.join(par['backends'])}: {par['same_predictions']}")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    print(f"  $OUT holds {len(files)} file(s): " + ", ".join(
        f"{p.relative_to(out)} ({p.stat().st_size / 1e6:.2f} MB)" for p in files))
    if len(files) > MAX_FILES or any(p.stat().st_size > MAX_BYTES or
                                     len(p.relative_to(out).parts) > MAX_DEPTH for p in files):
        print("  !! over the device tool's limits (8 files, 16 MiB each, 2 folders deep)")


def main(out: str, workdir: str, stages_json: str, dry: str, test_backends: str) -> int:
    out_dir, work = Path(out), Path(workdir)
    summary = {"mode": "dry-run" if dry == "1" else "gpu",
               "stages": json.loads(Path(stages_json).read_text()),
               "env": load_json(work / "env.json"), "train": load_json(work / "train.json"),
               "parity": load_json(work / "parity.json")}
    junit = out_dir / "junit.xml"
    if junit.exists():
        try:
            summary |= count_tests(junit, [s for s in test_backends.split(",") if s])
        except ET.ParseError as exc:
            summary["tests"] = {"error": str(exc)}
    bad = gate_gpu_tests(summary)
    (out_dir / "RESULTS_gpu.md").write_text(results_markdown(summary, work))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print_summary(summary, out_dir)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
