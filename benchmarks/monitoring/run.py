"""Monitoring benchmark: modelyard, Evidently and whylogs on the same Parquet files, one run each.

    .venv/bin/python benchmarks/monitoring/run.py [--sizes 1k,100k,1M,10M]
        [--tools modelyard,evidently,whylogs] [--setup] [--timeout 900] [--mem-cap-gb 16]

Every (tool, size, pair) is one child process running that tool's runner in the tool's own
venv, one after another; the child's peak RSS comes from ``os.wait4`` (the kernel's
``ru_maxrss`` of that child alone). The child prints the work seconds it measured after its
imports; the driver also measures the process's wall time. A child is killed at ``--timeout``
seconds or when its RSS passes ``--mem-cap-gb`` (polled every 0.1 s), and the row says so. When
a tool does not finish on the no-drift pair of a size, its larger sizes are not attempted.

Writes ``results/<date>.md`` (table, ratios, targets, machine, versions, command) and
``results/<date>.jsonl`` (every child's JSON), and prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from data import DEFAULT_WORKDIR, PLANTED, SIZES, ensure  # noqa: E402

VENVS = Path(os.environ.get("BENCH_MONITORING_VENVS", "/root/.cache/bench-monitoring"))
TOOLS = ("modelyard", "evidently", "whylogs")
# What --setup installs; pins are the versions this benchmark was last run with (README).
REQUIREMENTS = {
    "evidently": ["evidently==0.7.23", "pandas<3", "pyarrow"],
    # whylogs 1.6.4 uses np.unicode_ (removed in NumPy 2); pyarrow 23+ needs NumPy 2.
    "whylogs": ["whylogs[viz]==1.6.4", "numpy<2", "pandas<3", "pyarrow<23"],
}
RUNNERS = {
    "modelyard": "ours.py",
    "evidently": "evidently_runner.py",
    "whylogs": "whylogs_runner.py",
}
PACKAGES = {
    "modelyard": ["modelyard", "numpy", "pandas", "pyarrow", "datasketches", "scipy"],
    "evidently": ["evidently", "numpy", "pandas", "pyarrow", "scipy"],
    "whylogs": ["whylogs", "whylogs-sketching", "numpy", "pandas", "pyarrow", "scipy"],
}
PRIMITIVES = [
    "profile.py", "calibration.py", "nulls.py", "weighted.py", "drift.py", "sketches.py",
    "_tables.py",
]


def python_of(tool: str) -> Path:
    if tool == "modelyard":
        return REPO / ".venv" / "bin" / "python"
    return VENVS / tool / "bin" / "python"


def setup(tool: str) -> None:
    """Create the tool's venv with python3.11 and install its pinned packages."""
    if tool == "modelyard" or python_of(tool).exists():
        return
    subprocess.run(["python3.11", "-m", "venv", str(VENVS / tool)], check=True)
    pip = [str(VENVS / tool / "bin" / "pip"), "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *REQUIREMENTS[tool]], check=True)


def versions(tool: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        f"names = {PACKAGES[tool]!r}\n"
        "out = {'python': sys.version.split()[0]}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = 'absent'\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(python_of(tool)), "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _rss_mb(pid: int) -> float:
    """RSS of ``pid`` and every process it started, summed (a worker's pages it shares with
    its parent count twice: an upper bound)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return total


def wait_idle(limit: float, share: float = 0.15) -> float:
    """Wait up to ``limit`` s for the machine to be idle (busy share under ``share`` over 1 s);
    returns the busy share seen last."""
    deadline = time.monotonic() + limit
    while True:
        busy0, total0 = _busy_jiffies()
        time.sleep(1.0)
        busy1, total1 = _busy_jiffies()
        seen = (busy1 - busy0) / max(total1 - total0, 1)
        if seen < share or time.monotonic() > deadline:
            return seen


def tables_dir(args: argparse.Namespace, rows: int) -> Path:
    """Our null tables for one size: emptied before its first run, so that run draws them and
    the next (the drift pair) finds them on disk, as a second report on one reference would."""
    return args.workdir / "null-tables" / str(rows)


def run_child(
    tool: str, reference: Path, current: Path, rows: int, args: argparse.Namespace
) -> dict[str, Any]:
    command = [
        str(python_of(tool)),
        str(HERE / RUNNERS[tool]),
        str(reference),
        str(current),
        "--rows",
        str(rows),
        "--calibration-rows",
        str(args.calibration_rows),
        "--calibration-window",
        str(args.calibration_window),
    ]
    if tool == "modelyard":
        command += ["--null-tables", str(tables_dir(args, rows)), "--workers",
                    str(args.our_workers)]
    busy0, _ = _busy_jiffies()
    start = time.perf_counter()
    # Output goes to files, not pipes: a chatty child must never block on a full pipe.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            command, stdout=out, stderr=err, cwd=HERE, start_new_session=True, text=True
        )
        stopped, polled_peak, cap_mb = None, 0.0, args.mem_cap_gb * 1024
        while True:
            # os.wait4 (not Popen.poll, which would reap it) gives this child's own rusage.
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss_mb(child.pid)
            polled_peak = max(polled_peak, rss)
            elapsed = time.perf_counter() - start
            if elapsed > args.timeout:
                stopped = f"did not finish: stopped after {args.timeout:.0f} s (timeout)"
            elif rss > cap_mb:
                stopped = (
                    f"did not finish: RSS passed the {args.mem_cap_gb:g} GB cap after "
                    f"{elapsed:.0f} s"
                )
            if stopped:
                os.killpg(child.pid, signal.SIGKILL)
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.1)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    wall = time.perf_counter() - start
    busy1, _ = _busy_jiffies()
    hz = os.sysconf("SC_CLK_TCK")
    child_cpu = usage.ru_utime + usage.ru_stime
    other = max(0.0, (busy1 - busy0) / hz - child_cpu)
    record: dict[str, Any] = {
        "tool": tool,
        "rows": rows,
        "command": shlex.join(command),
        "wall_seconds": wall,
        # the kernel's peak of the runner itself, or the polled sum over its process tree
        # (a runner with worker processes) when that is larger
        "peak_rss_mb": max(usage.ru_maxrss / 1024, polled_peak),
        "kernel_peak_rss_mb": usage.ru_maxrss / 1024,
        "polled_peak_rss_mb": polled_peak,
        "cpu_seconds": child_cpu,
        "other_cpu_share": other / max(wall * (os.cpu_count() or 1), 1e-9),
    }
    if stopped:
        record["status"] = stopped
    elif child.returncode != 0:
        last = [line for line in stderr.strip().splitlines() if line.strip()][-1:] or ["?"]
        record["status"] = f"did not finish: exit code {child.returncode}: {last[0][:200]}"
    else:
        try:
            record.update(json.loads(stdout.strip().splitlines()[-1]))
            record["status"] = "ok"
        except (IndexError, json.JSONDecodeError):
            record["status"] = f"did not finish: no JSON on stdout: {stdout[-200:]!r}"
    return record


def machine() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        "?",
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    return {
        "cpu": f"{os.cpu_count()} vCPU {model}",
        "memory": f"{int(memory) / 1024**2:.1f} GiB",
        "os": release.get("PRETTY_NAME", "?").strip('"') + f", kernel {platform.release()}",
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def code_state() -> dict[str, str]:
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    folder = REPO / "src" / "modelyard" / "monitoring"
    digest = hashlib.sha256(b"".join((folder / name).read_bytes() for name in PRIMITIVES))
    dirty = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "status",
            "--short",
            "--",
            *(str(folder / name) for name in PRIMITIVES),
        ],
        capture_output=True,
        text=True,
    ).stdout
    return {
        "commit": head,
        "primitives_sha256": digest.hexdigest()[:12],
        "primitives_uncommitted": "yes" if dirty.strip() else "no",
    }


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else (f"{value:.3f}" if value < 10 else f"{value:.1f}")


def _flags(record: dict[str, Any], pair: str) -> str:
    if record.get("status") != "ok":
        return "-"
    drifted = record["drifted_columns"]
    if pair == "nodrift":
        return f"{len(drifted)}/{record['columns']}"
    found = [name for name in drifted if name in PLANTED]
    extra = [name for name in drifted if name not in PLANTED]
    return f"{len(found)}/{len(PLANTED)}" + (f" (+{len(extra)} unplanted)" if extra else "")


def report(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    by_key = {(r["tool"], r["size"], r["pair"]): r for r in records}
    sizes = [s for s in SIZES if any(r["size"] == s for r in records)]
    tools = [t for t in TOOLS if any(r["tool"] == t for r in records)]
    lines = [
        "| tool | rows | seconds no-drift / drift | process wall s | peak RSS MB | "
        "false-positive columns on no-drift | planted detected on drift | status |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in sizes:
        for tool in tools:
            pair = [by_key.get((tool, size, p)) for p in ("nodrift", "drift")]
            if not any(pair):
                continue
            seconds = " / ".join(
                _fmt_s(r["seconds"]) if r and r.get("status") == "ok" else "-" for r in pair
            )
            walls = " / ".join(_fmt_s(r.get("wall_seconds")) if r else "-" for r in pair)
            rss = max((r["peak_rss_mb"] for r in pair if r and "peak_rss_mb" in r), default=None)
            status = (
                "; ".join(
                    sorted(
                        {
                            f"{p}: {r['status']}"
                            for p, r in zip(("no-drift", "drift"), pair, strict=True)
                            if r and r["status"] != "ok"
                        }
                    )
                )
                or "ok"
            )
            lines.append(
                f"| {tool} | {size} | {seconds} | {walls} | "
                f"{'-' if rss is None else f'{rss:,.0f}'} | "
                f"{_flags(pair[0], 'nodrift') if pair[0] else '-'} | "
                f"{_flags(pair[1], 'drift') if pair[1] else '-'} | {status} |"
            )
    lines += [
        "",
        "Our phases (seconds, no-drift / drift run):",
        "",
        "| rows | profile reference | profile current | sample reference | calibrate | "
        "of which drawing null tables | compare | total | total without calibrate |",
        "|---:" * 9 + "|",
    ]
    for size in sizes:
        pair = [by_key.get(("modelyard", size, p)) for p in ("nodrift", "drift")]
        if not all(r and r.get("status") == "ok" for r in pair):
            continue
        cells = [
            " / ".join(_fmt_s(r["phases"][name]) for r in pair)
            for name in (
                "profile_reference",
                "profile_current",
                "sample_reference",
                "calibrate",
            )
        ]
        cells.append(" / ".join(_fmt_s(r.get("null_tables_seconds")) for r in pair))
        cells.append(" / ".join(_fmt_s(r["phases"]["compare"]) for r in pair))
        total = " / ".join(_fmt_s(r["seconds"]) for r in pair)
        lean = " / ".join(_fmt_s(r["seconds"] - r["phases"]["calibrate"]) for r in pair)
        lines.append(f"| {size} | " + " | ".join(cells) + f" | {total} | {lean} |")
    for tool in tools[1:]:
        names = list(
            dict.fromkeys(
                name
                for r in records
                if r["tool"] == tool and r.get("status") == "ok"
                for name in r["phases"]
            )
        )
        if not names:
            continue
        lines += [
            "",
            f"{tool} phases (seconds, no-drift / drift run):",
            "",
            "| rows | " + " | ".join(names) + " |",
            "|---:|" + "---:|" * len(names),
        ]
        for size in sizes:
            pair = [by_key.get((tool, size, p)) for p in ("nodrift", "drift")]
            if not all(r and r.get("status") == "ok" for r in pair):
                continue
            lines.append(
                f"| {size} | "
                + " | ".join(" / ".join(_fmt_s(r["phases"].get(n)) for r in pair) for n in names)
                + " |"
            )
    lines += [
        "",
        "Ratios at each size (mean work seconds of the two pairs; peak RSS the larger "
        'of the two runs). Our no-drift run draws its null tables, the drift run finds them '
        'on disk (they depend only on the sample and window sizes, not on the data, so any '
        'earlier report of that shape left them); "tables on disk" compares that pair alone; '
        '"thresholds precomputed" leaves out our calibrate phase:',
        "",
        "| rows | vs | their s / our s | their s / our s, tables on disk | "
        "their s / our s, thresholds precomputed | their RSS / our RSS |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    ratios: dict[tuple[str, str], tuple[float, float | None, float, float]] = {}
    for size in sizes:
        ours = [by_key.get(("modelyard", size, p)) for p in ("nodrift", "drift")]
        if not all(r and r.get("status") == "ok" for r in ours):
            continue
        our_s = sum(r["seconds"] for r in ours) / 2
        our_lean = sum(r["seconds"] - r["phases"]["calibrate"] for r in ours) / 2
        our_rss = max(r["peak_rss_mb"] for r in ours)
        for tool in tools[1:]:
            theirs = [by_key.get((tool, size, p)) for p in ("nodrift", "drift")]
            if not all(r and r.get("status") == "ok" for r in theirs):
                lines.append(f"| {size} | {tool} | did not finish | - | did not finish | - |")
                continue
            s = sum(r["seconds"] for r in theirs) / 2
            rss = max(r["peak_rss_mb"] for r in theirs)
            stored = [t["seconds"] / o["seconds"] for o, t in zip(ours, theirs, strict=True)
                      if o.get("null_tables_drawn") == 0]
            on_disk = min(stored) if stored else None
            ratios[(size, tool)] = (s / our_s, on_disk, s / our_lean, rss / our_rss)
            lines.append(
                f"| {size} | {tool} | {s / our_s:.2f}x | "
                + (f"{on_disk:.1f}x" if on_disk is not None else "-")
                + f" | {s / our_lean:.1f}x | {rss / our_rss:.2f}x |"
            )
    lines += ["", "Targets (issue 5), as measured in this run:", ""]
    lines += targets(by_key, ratios)
    lines += [
        "",
        "Planted shifts in the drift pair: "
        + "; ".join(f"`{k}` {v}" for k, v in PLANTED.items())
        + ".",
        "",
    ]
    lines += [
        "- Command: `" + meta["command"] + "`",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']['cpu']}, {meta['machine']['memory']}, "
        f"{meta['machine']['os']}; load average at start "
        f"{meta['machine']['loadavg_at_start']}",
        f"- modelyard code: commit {meta['code']['commit']}, monitoring primitives sha256 "
        f"{meta['code']['primitives_sha256']} (uncommitted changes in them: "
        f"{meta['code']['primitives_uncommitted']})",
        f"- Calibration: sample of at most {meta['calibration_rows']:,} reference rows, "
        f"window_rows = min(current rows, {meta['calibration_window']:,}), alpha 0.01, "
        "n_boot 200, k 200",
        f"- Limits per child: {meta['timeout']:.0f} s, {meta['mem_cap_gb']:g} GB RSS",
    ]
    for tool, found in meta["versions"].items():
        lines.append(f"- {tool} venv: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    busy = [r for r in records if r.get("other_cpu_share", 0) > 0.1]
    if busy:
        lines.append(
            "- Other processes used more than 10 % of the machine's CPU during: "
            + ", ".join(
                f"{r['tool']} {r['size']} {r['pair']} ({r['other_cpu_share']:.0%})" for r in busy
            )
        )
    else:
        lines.append("- Other processes used under 10 % of the machine's CPU during every run.")
    return "\n".join(lines) + "\n"


def targets(by_key: dict, ratios: dict) -> list[str]:
    out = []
    ours = [by_key.get(("modelyard", "1M", p)) for p in ("nodrift", "drift")]
    if all(r and r.get("status") == "ok" for r in ours):
        worst = max(r["seconds"] for r in ours)
        stored = [r["seconds"] for r in ours if r.get("null_tables_drawn") == 0]
        lean = max(r["seconds"] - r["phases"]["calibrate"] for r in ours)
        rss = max(r["peak_rss_mb"] for r in ours)
        out.append(
            f"- 1M rows profile + drift ≤ 3 s: {worst:.2f} s with calibration, null tables "
            f"drawn in the run ({'met' if worst <= 3 else 'NOT met'}); "
            + (f"{max(stored):.2f} s with the tables on disk "
               f"({'met' if max(stored) <= 3 else 'NOT met'}); " if stored else "")
            + f"{lean:.2f} s with thresholds precomputed ({'met' if lean <= 3 else 'NOT met'})."
        )
        out.append(f"- 1M rows ≤ 500 MB peak: {rss:.0f} MB ({'met' if rss <= 500 else 'NOT met'}).")
    big = [by_key.get(("modelyard", "10M", p)) for p in ("nodrift", "drift")]
    if all(r and r.get("status") == "ok" for r in big) and all(
        r and r.get("status") == "ok" for r in ours
    ):
        r10 = max(r["peak_rss_mb"] for r in big)
        r1 = max(r["peak_rss_mb"] for r in ours)
        out.append(
            f"- 10M rows in bounded memory: peak {r10:.0f} MB at 10M vs {r1:.0f} MB at 1M "
            f"({'met' if r10 <= 1.25 * r1 else 'NOT met'}: bounded means within 25 % of "
            "the 1M peak)."
        )
    for tool, need in (("whylogs", 10), ("evidently", 40)):
        if ("1M", tool) in ratios:
            full, on_disk, lean, _ = ratios[("1M", tool)]
            out.append(
                f"- ≥ {need}x faster than {tool} at 1M: {full:.2f}x on the mean of a run "
                f"that draws the null tables and one that finds them "
                f"({'met' if full >= need else 'NOT met'}); "
                + (f"{on_disk:.1f}x with the tables on disk ("
                   f"{'met' if on_disk >= need else 'NOT met'}); " if on_disk else "")
                + f"{lean:.1f}x with thresholds precomputed "
                f"({'met' if lean >= need else 'NOT met'})."
            )
    return out or ["- (1M was not run)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--pairs", default="nodrift,drift")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--setup", action="store_true", help="create missing tool venvs")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--mem-cap-gb", type=float, default=16.0)
    parser.add_argument("--calibration-rows", type=int, default=100_000)
    parser.add_argument("--calibration-window", type=int, default=100_000)
    parser.add_argument("--our-workers", type=int, default=1,
                        help="processes our profile_table may use (the others use one); "
                        "2 measured slower than 1 on this machine, see RESULTS.md")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=120.0,
        help="seconds to wait, before each run, for other load to stop",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    sizes, tools = args.sizes.split(","), args.tools.split(",")
    for tool in tools:
        if args.setup:
            setup(tool)
        if not python_of(tool).exists():
            sys.exit(f"no venv for {tool} at {python_of(tool)}: run with --setup")
    meta = {
        "command": "python benchmarks/monitoring/run.py " + shlex.join(sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "code": code_state(),
        "versions": {tool: versions(tool) for tool in tools},
        "timeout": args.timeout,
        "mem_cap_gb": args.mem_cap_gb,
        "calibration_rows": args.calibration_rows,
        "calibration_window": args.calibration_window,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = meta["date"]
    n = 1
    while (args.out / f"{stem}.md").exists():
        n += 1
        stem = f"{meta['date']}-{n}"
    raw = args.out / f"{stem}.jsonl"
    records: list[dict[str, Any]] = []
    given_up: set[str] = set()
    for size in sizes:
        files = ensure(size, args.workdir)
        shutil.rmtree(tables_dir(args, SIZES[size]), ignore_errors=True)
        for tool in tools:
            for pair in args.pairs.split(","):
                if tool in given_up:
                    record = {
                        "tool": tool,
                        "rows": SIZES[size],
                        "status": "not attempted: an earlier run did not finish",
                    }
                else:
                    print(
                        f"[{time.strftime('%H:%M:%S')}] {tool} {size} {pair} ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    busy_before = wait_idle(args.wait_idle)
                    record = run_child(
                        tool, files["reference"], files[f"current-{pair}"], SIZES[size], args
                    )
                    record["busy_share_before"] = busy_before
                    print(
                        f"    {record['status']}: {record.get('seconds', 0):.2f} s, "
                        f"{record['peak_rss_mb']:.0f} MB, drifted "
                        f"{record.get('drifted_columns')}",
                        file=sys.stderr,
                        flush=True,
                    )
                    if record["status"] != "ok":
                        given_up.add(tool)
                record.update(size=size, pair=pair)
                records.append(record)
                with raw.open("a") as sink:
                    sink.write(json.dumps(record) + "\n")
    text = report(records, meta)
    (args.out / f"{stem}.md").write_text(f"# Monitoring benchmark, {meta['date']}\n\n" + text)
    print(text)
    print(f"wrote {args.out / f'{stem}.md'} and {raw}", file=sys.stderr)


if __name__ == "__main__":
    main()
