"""The GPU check's report: OUT/report.md and OUT/report.json from what tools/gpu_check/run.sh
left in OUT (gpu_check.json and gpu_check_again.json, torch.json, sanitizer-*.txt, versions.txt).
Standard library only. Exits 1 when a correctness or sanitizer check failed; the speed targets
are reported, not enforced.

    python tools/gpu_check/report.py OUT
"""
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Optional

SPEED_TARGET = 1.10  # forward + backward at most this times PyTorch's batch norm + ReLU
BANDWIDTH_TARGET = 0.70  # of the device's memory bandwidth, on layers larger than L2
SANITIZERS = ("memcheck", "racecheck", "synccheck")


def load(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def sanitizer_result(path: Path) -> dict:
    """compute-sanitizer's verdict from its log (run.sh appends "exit status: N"): the errors
    it reports (racecheck: its error-level hazards) and the check's exit status under it; ok
    when both are 0."""
    if not path.is_file():
        return {"ran": False, "ok": None, "summary": "not run"}
    text = path.read_text(errors="replace")
    summaries = re.findall(r"(?:ERROR|RACECHECK) SUMMARY: .*", text)
    counts = [int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) error", text)]
    counts += [int(n) for n in re.findall(r"RACECHECK SUMMARY: .*\((\d+) errors?", text)]
    statuses = re.findall(r"exit status: (\d+)", text)
    errors = max(counts) if counts else None
    status = int(statuses[-1]) if statuses else None
    summary = "; ".join(summaries) or "no summary: " + " / ".join(text.strip().splitlines()[-2:])
    return {"ran": True, "ok": errors == 0 and status == 0, "errors": errors,
            "exit_status": status, "summary": f"{summary} (exit status {status})"}


def timing_rows(check: dict, torch: Optional[dict]) -> list:
    """Per SSD layer and dtype: our times, PyTorch's, their ratio and our bandwidth."""
    theirs = {(t["layer"], t["dtype"]): t for t in (torch or {}).get("timing", [])}
    peak = check["device"]["peak_bytes_per_s"] or None
    copy = check.get("copy_bytes_per_s")
    rows = []
    for t in check["timing"]:
        rate = t["bytes"] / (t["forward_backward_ms"] * 1e-3)
        base = theirs.get((t["layer"], t["dtype"]))
        rows.append(dict(t, bytes_per_s=rate,
                         of_peak=rate / peak if peak else None,
                         of_copy=rate / copy if copy else None,
                         torch_forward_backward_ms=base and base["forward_backward_ms"],
                         ratio=base and t["forward_backward_ms"] / base["forward_backward_ms"]))
    return rows


def summarize(check: dict, again: Optional[dict], torch: Optional[dict], sanitizers: dict
              ) -> dict:
    rows = timing_rows(check, torch) if check.get("timing") else []
    l2 = check["device"]["l2_bytes"] or 0
    # each array larger than L2: the pass streams from device memory
    large = [r for r in rows if r["data_bytes"] > l2] if l2 else []
    summary = {
        "cases": len(check["cases"]), "failed": check["failed"],
        "not_repeatable_within_run": check["not_repeatable"],
        "worst_error_over_tolerance": check["worst_error_over_tolerance"],
        "same_bits_across_runs": again["digest"] == check["digest"] if again else None,
        "sanitizers": sanitizers, "per_dtype": {}}
    for dtype in sorted({r["dtype"] for r in rows}):
        mine = [r for r in rows if r["dtype"] == dtype]
        entry = {"forward_backward_ms": sum(r["forward_backward_ms"] for r in mine)}
        if all(r["ratio"] is not None for r in mine):
            entry["torch_forward_backward_ms"] = sum(r["torch_forward_backward_ms"]
                                                     for r in mine)
            entry["ratio_total"] = entry["forward_backward_ms"] / entry[
                "torch_forward_backward_ms"]
            entry["ratio_max"] = max(r["ratio"] for r in mine)
            entry["layers_over_target"] = [r["layer"] for r in mine
                                           if r["ratio"] > SPEED_TARGET]
        big = [r for r in large if r["dtype"] == dtype and r["of_peak"] is not None]
        if big:
            entry["large_layers"] = len(big)
            entry["of_peak_min"] = min(r["of_peak"] for r in big)
            entry["of_peak_median"] = statistics.median(r["of_peak"] for r in big)
            entry["of_copy_median"] = (statistics.median(r["of_copy"] for r in big)
                                       if big[0]["of_copy"] else None)
        summary["per_dtype"][dtype] = entry
    summary["correct"] = (check["failed"] == 0 and summary["same_bits_across_runs"] is not False
                          and all(s["ok"] for s in sanitizers.values() if s["ran"]))
    return {"summary": summary, "rows": rows}


def verdict(value: Optional[float], target: float, at_most: bool) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "MISSED"


def markdown(check: dict, torch: Optional[dict], result: dict, versions: str) -> str:
    s, dev = result["summary"], check["device"]
    ssd = [c for c in check["cases"] if c["case"].startswith("SSD ")]
    batches = sorted({c["shape"].split("x")[0] for c in ssd})
    same = {True: "yes", False: "NO", None: "not run"}
    lines = [f"# GPU check: {dev['name']}", "",
             f"Compute capability {dev['compute_capability'] / 10:.1f}, driver CUDA "
             f"{dev['driver']}; {versions.strip() or 'toolkit version not recorded'}.", "",
             "## Correctness", "",
             f"- {s['cases']} cases against the CPU arithmetic (kernels.h) with the tolerances "
             f"of tests/model/test_gpu_compute.py: {s['cases'] - len(ssd)} with odd sizes (settings x "
             f"float16/32/64 x training and inference), {len(ssd)} of the SSD model's layers "
             f"(batch {', '.join(batches) or '-'}, float32 and float16, training with ReLU). "
             f"{s['failed']} failed; worst error {s['worst_error_over_tolerance']:.3g} of its "
             f"tolerance.",
             f"- Same bits twice in a run: {same[s['not_repeatable_within_run'] == 0]}; in a "
             f"second run: {same[s['same_bits_across_runs']]}."]
    for tool, r in s["sanitizers"].items():
        lines.append(f"- compute-sanitizer {tool}: {r['summary']}")
    if result["rows"]:
        baseline = (f"PyTorch {torch['torch']} (cuDNN {torch['cudnn']}) batch norm then ReLU; "
                    f"its kernels: " + "; ".join(f"{d}: {', '.join(k)}" for d, k in
                                                 torch["kernels"].items())
                    if torch else "none (no PyTorch with CUDA)")
        lines += ["", "## Speed (training, fused ReLU, forward + backward)", "",
                  f"Baseline: {baseline}.",
                  f"Bandwidth: bytes the kernels move (10 data-sized arrays) over time, against "
                  f"the device's peak ({(dev['peak_bytes_per_s'] or 0) / 1e9:.0f} GB/s, memory "
                  f"clock x bus width) and a device-to-device copy "
                  f"({(check.get('copy_bytes_per_s') or 0) / 1e9:.0f} GB/s).", "",
                  "| dtype | layers | ms, all | PyTorch ms | ratio (target <= 1.10) | worst "
                  "layer | larger than L2: median of peak bandwidth (target >= 70 %) |",
                  "|---|---|---|---|---|---|---|"]
        nan = float("nan")
        for dtype, e in s["per_dtype"].items():
            layers = sum(r["dtype"] == dtype for r in result["rows"])
            lines.append(f"| {dtype} | {layers} | {e['forward_backward_ms']:.2f} | "
                         f"{e.get('torch_forward_backward_ms', nan):.2f} | "
                         f"{e.get('ratio_total', nan):.2f} "
                         f"({verdict(e.get('ratio_total'), SPEED_TARGET, True)}) | "
                         f"{e.get('ratio_max', nan):.2f} | "
                         f"{100 * e.get('of_peak_median', nan):.0f} % (min "
                         f"{100 * e.get('of_peak_min', nan):.0f} %, "
                         f"{e.get('large_layers', 0)} layers; "
                         f"{verdict(e.get('of_peak_median'), BANDWIDTH_TARGET, False)}) |")
        lines += ["", "| layer | shape | dtype | ms | PyTorch ms | ratio | GB/s | of peak |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            lines.append(f"| {r['layer']} | {r['shape']} | {r['dtype']} | "
                         f"{r['forward_backward_ms']:.4f} | "
                         f"{r['torch_forward_backward_ms'] or nan:.4f} | "
                         f"{r['ratio'] or nan:.2f} | {r['bytes_per_s'] / 1e9:.0f} | "
                         f"{100 * (r['of_peak'] or nan):.0f} % |")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    out = Path(sys.argv[1])
    check = load(out / "gpu_check.json")
    if check is None:
        print(f"no {out / 'gpu_check.json'}: the check did not run (see {out}/gpu_check.txt)")
        return 1
    torch = load(out / "torch.json")
    sanitizers = {tool: sanitizer_result(out / f"sanitizer-{tool}.txt") for tool in SANITIZERS}
    versions = (out / "versions.txt").read_text() if (out / "versions.txt").is_file() else ""
    result = summarize(check, load(out / "gpu_check_again.json"), torch, sanitizers)
    report = dict(device=check["device"], torch=torch and {k: torch[k] for k in (
        "torch", "cuda", "cudnn", "device", "kernels")}, versions=versions.strip(), **result)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    text = markdown(check, torch, result, versions)
    (out / "report.md").write_text(text)
    print(text)
    return 0 if result["summary"]["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
