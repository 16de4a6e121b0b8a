"""Speed and memory of ``ned edit`` against a plain decode + re-encode of the same clip.

Runs, in fresh child processes (``ned.bench``), round-robin ``--repeat`` times:

- ``baseline``: decode -> RGB -> encode (H.264 veryfast CRF 18, audio copied), the frame
  path of a numpy pipeline;
- ``transcode``: decode -> encode of the decoded YUV pictures (no RGB), as
  ``ffmpeg -i in -c:v libx264 -preset veryfast -crf 18 -c:a copy`` does;
- ``edit``: the whole ``ned edit --emotion happy`` (imports, models, two passes), with
  its default expression-appearance step;
- ``edit_warp``: the same with ``--appearance off`` (the shape edit alone).

Every reference gets what the edit gets (a read-ahead decoding thread, the same
allocator tuning). Ratios are taken within each round (edit_k / baseline_k: measured in
the same run, under the same load) and reported as median and range, for wall-clock
seconds and for CPU seconds (user + system of the child, all threads: much less
sensitive to other processes on a shared machine). Peak memory is measured on the clip
and on the clip looped 4 times.

Usage::

    python benchmarks/bench_edit.py [--clip PATH] [--repeat 3] [--no-loop] [--json out.json]

Target (issue 4): edit <= 1.5 x the plain decode + re-encode, peak memory flat with length.
No assertions: speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from ned.bench import format_table, results_json, run_bench
from ned.layout import atomic_write_json

DEFAULT_CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "mead_1080p" / "W015_level_1_neutral_030.mp4"


def paired_ratios(num: list[float], den: list[float]) -> dict[str, float]:
    """Median, min and max of ``num[k] / den[k]`` (runs of the same round)."""
    ratios = [a / b for a, b in zip(num, den) if b > 0]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP if DEFAULT_CLIP.is_file() else None,
                    help="video (default: the 1080p MEAD clip W015 when present, else the built-in sample)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of baseline, transcode and edit")
    ap.add_argument("--no-loop", action="store_true", help="skip the 4x-looped memory runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    results = run_bench(args.clip, stages=("baseline", "transcode", "edit", "edit_warp"), loop_memory=not args.no_loop,
                        repeat=args.repeat, progress=lambda m: print(f"bench_edit: {m}", file=sys.stderr, flush=True))
    by = {r.stage: r for r in results}
    summary: dict[str, object] = {"load_avg_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    for stage in ("edit", "edit_warp"):
        for ref in ("baseline", "transcode"):
            summary[f"{stage}_over_{ref}_wall"] = paired_ratios(list(by[stage].seconds_runs),
                                                                list(by[ref].seconds_runs))
            summary[f"{stage}_over_{ref}_cpu"] = paired_ratios(list(by[stage].cpu_seconds_runs),
                                                               list(by[ref].cpu_seconds_runs))
    print(format_table(results))
    print()
    for key, value in summary.items():
        if isinstance(value, dict):
            print(f"{key:<32} median {value['median']:.2f}  range {value['min']:.2f}-{value['max']:.2f}")
        else:
            print(f"{key:<32} {value}")
    for stage in ("edit", "edit_warp"):
        r = by[stage]
        if r.peak_rss_mb_looped4 is not None:
            print(f"{stage + ' peak MB clip / x4':<32} {r.peak_rss_mb:.0f} / {r.peak_rss_mb_looped4:.0f}")
    figures = results_json(results, args.clip)
    figures["summary"] = summary
    if args.json:
        atomic_write_json(args.json, figures, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
