"""Hostile inputs of issue 11, each run as a real `tans` command in a subprocess, with its peak memory.

Rerun (from the repository root; about 3 minutes on 2 cores, tiny data, no network)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/robustness.py

Writes ``benchmarks/results/robustness.{json,md}`` (``--out DIR`` to write elsewhere; ``--case NAME``,
repeatable, runs only some cases). Exits 1 when a case does not behave as expected.

Each case runs in a fresh Python process (``--run-case NAME``) that prepares its inputs, runs the
``tans`` command(s) under test and reports what it saw. Each command is started by a small launcher
process (``--launch``) that records ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once the command ends:
peak RSS is the largest of these (a launcher, not the case process, since Linux counts the RSS of the
process a child was forked from in the child's peak, and the case process may have imported torch).
Workers of a process pool are not included (see the orphan case's own figure). Cases:

- ``image-bomb``: ``tans data inspect`` of a folder holding a PNG that declares 20,000 x 20,000 pixels
  (a 50 KB file that would decode to 1.2 GB): refused before decoding, memory stays small.
- ``import-bomb``: ``tans zoo import`` of a .tar.gz whose weights member inflates to 1.5 GiB: refused
  from the member's declared size, nothing read, no zoo left behind.
- ``orphan-workers``: ``kill -9`` of ``tans zoo build --workers 2`` once its two workers run: every child
  (workers, resource tracker) must be gone within 10 s; a rerun then finishes the zoo (the killed
  builder's claims are taken over).
- ``concurrent-builders``: two ``tans zoo build`` of one new zoo started together: every unit trained
  exactly once between them, nothing lost, ``tans zoo verify`` ok.
- ``nan-split``: ``tans finetune --json`` on a dataset whose classes have 1-2 images: a one-line refusal
  (exit 2) saying how many images per class are needed, no NaN anywhere in the output.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TANS = [sys.executable, "-m", "tans.cli.main"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
TINY_BUILD = {"num_archs": 2, "archs_per_task": 2, "latency_repeats": 2,
              "recipe": {"epochs": 1, "warmup_epochs": 0, "max_train_images": 64, "max_eval_images": 32}}


RSS_DIR: Path | None = None  # where launchers of the current case write their child's peak RSS (KiB)


def launched(cmd: list[object]) -> list[str]:
    """``cmd`` run by a launcher that writes its peak RSS under RSS_DIR."""
    record = tempfile.mkstemp(dir=RSS_DIR, prefix="rss-")[1]
    return [sys.executable, __file__, "--launch", record, "--", *map(str, cmd)]


def launch(record: str, cmd: list[str]) -> int:
    """Run ``cmd`` (same stdin, stdout and stderr), write its peak RSS in KiB to ``record``, return its status."""
    code = subprocess.run(cmd).returncode
    Path(record).write_text(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
    return code if code >= 0 else 128 - code


def tans(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(launched([*TANS, *args]), capture_output=True, text=True, env=ENV, timeout=timeout)


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


# ---------------------------------------------------------------------------------------- inputs
def write_images(folder: Path, counts: dict[str, int], size: int = 16) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")
    return folder


def bomb_png(path: Path, side: int = 20_000) -> Path:
    """A grey PNG of ``side`` x ``side`` pixels, all zero, written without ever holding it in memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), bytes(side + 1)  # filter byte + one byte per pixel
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def fake_zoo(path: Path):
    """A zoo of one untrained network (real weights of a real architecture, made-up metrics)."""
    import numpy as np

    from tans.space.registry import create_model
    from tans.zoo import Zoo, ZooEntry, unit_key

    zoo = Zoo.create(path)
    arch, recipe = "mbv3_min", {"epochs": 1}
    state = create_model(arch, num_classes=5).state_dict()
    params = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    entry = ZooEntry(
        id=unit_key(arch, "fp-fake", recipe, 0), arch=arch, task="fake", task_fingerprint="fp-fake",
        task_family="fake", num_classes=5, recipe=recipe, seed=0, val_acc=0.9, test_acc=0.9, chance_acc=0.2,
        params=params, flops=1, latency_ms=1.0, latency_threads=1, machine="robustness", embedding=np.zeros(8, np.float32),
    )  # fmt: skip
    zoo.add(entry, state)
    return zoo, entry.id


class Zeros(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ----------------------------------------------------------------------------------------- cases
def case_image_bomb(work: Path) -> tuple[bool, str]:
    folder = write_images(work / "data", {"cat": 8, "dog": 8})
    size = bomb_png(folder / "cat" / "bomb.png").stat().st_size
    run = tans("data", "inspect", folder, "--json")
    problems = json.loads(run.stdout).get("problems", []) if run.returncode in (0, 2) else []
    said = [p["detail"] for p in problems if any("bomb.png" in e for e in p.get("examples", []))]
    ok = run.returncode == 0 and bool(said)
    return ok, f"exit {run.returncode}, bomb.png ({size // 1024} KB): {said[0] if said else 'NOT reported'}"


def case_import_bomb(work: Path) -> tuple[bool, str]:
    from tans.zoo import export_zoo

    src, _ = fake_zoo(work / "src")
    plain = export_zoo(src, work / "good.tar")
    bomb = work / "bomb.tar.gz"
    inflated = 3 << 29  # 1.5 GiB
    with tarfile.open(plain) as tar_in, tarfile.open(bomb, "w:gz", compresslevel=1) as tar_out:
        for info in tar_in.getmembers():
            if info.name.startswith("weights/"):
                info.size = inflated
                tar_out.addfile(info, io.BufferedReader(Zeros()))
            else:
                tar_out.addfile(info, tar_in.extractfile(info) if info.isfile() else None)
    run = tans("zoo", "import", bomb, "--zoo", work / "dst")
    err = one_line(run.stderr)
    ok = run.returncode == 2 and run.stderr.count("\n") == 1 and not (work / "dst").exists()
    return ok, f"exit {run.returncode}, {bomb.stat().st_size / 1e6:.1f} MB archive, zoo left behind: {(work / 'dst').exists()}: {short(err)}"


def case_orphan_workers(work: Path) -> tuple[bool, str]:
    config = work / "zoo.json"
    config.write_text(json.dumps({"tasks": ["digits-0-4", "digits-5-9"], **TINY_BUILD}))
    cmd = [*TANS, "zoo", "build", "--config", str(config), "--zoo", str(work / "zoo")]
    launcher = subprocess.Popen(launched([*cmd, "--workers", "2"]), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=ENV)
    deadline, kids, build = time.monotonic() + 180, [], None
    while time.monotonic() < deadline and launcher.poll() is None:
        build = build or next(iter(children(launcher.pid)), None)
        kids = children(build) if build else []
        workers = [p for p in kids if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
        if len(workers) >= 2 and all(rss_mb(p) > 150 for p in workers):  # both have imported torch
            break
        time.sleep(0.5)
    worker_rss = max((rss_mb(p) for p in kids), default=0.0)
    if build is not None:
        os.kill(build, signal.SIGKILL)
    launcher.wait()
    killed, deadline = time.monotonic(), time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in kids):
        time.sleep(0.1)
    left = [p for p in kids if alive(p)]
    gone_s = time.monotonic() - killed
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # do not leave them to the next case
    rerun = subprocess.run(launched([*cmd, "--workers", "1", "--json"]), capture_output=True, text=True, env=ENV,
                           timeout=600)
    summary = json.loads(rerun.stdout) if rerun.returncode == 0 else {}
    finished = summary.get("skipped", 0) + summary.get("built", 0) == summary.get("planned", -1) and not summary.get("held")
    ok = len(kids) >= 2 and not left and finished
    return ok, (
        f"{len(kids)} children (largest {worker_rss:.0f} MB) "
        + (f"{len(left)} still alive 10 s after the kill" if left else f"all gone {gone_s:.1f} s after the kill")
        + f"; rerun: built {summary.get('built')}, skipped {summary.get('skipped')}, held {summary.get('held')}"
        + f" of {summary.get('planned')}"
    )


def case_concurrent_builders(work: Path) -> tuple[bool, str]:
    config = work / "zoo.json"
    config.write_text(json.dumps({"tasks": ["digits-0-4", "digits-5-9", "digits"], **TINY_BUILD}))
    cmd = [*TANS, "zoo", "build", "--config", str(config), "--zoo", str(work / "zoo"), "--workers", "1", "--json"]
    procs = [subprocess.Popen(launched(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    if any(p.returncode for p in procs):
        return False, "a builder failed: " + " | ".join(one_line(err) for _, err in outs)
    a, b = (json.loads(out) for out, _ in outs)
    verify = tans("zoo", "verify", "--zoo", work / "zoo", "--json")
    report = json.loads(verify.stdout)
    planned = a["planned"]
    ok = a["built"] + b["built"] == planned == report["checked"] and report["ok"] and a["built"] and b["built"]
    return ok, (
        f"built {a['built']} + {b['built']} of {planned} units (held by the other: {a['held']}, {b['held']}); "
        f"zoo: {report['checked']} entries, verify {'ok' if report['ok'] else 'FAILED'}"
    )


def case_nan_split(work: Path) -> tuple[bool, str]:
    _, model = fake_zoo(work / "zoo")
    data = write_images(work / "tiny", {"a": 1, "b": 2, "c": 2})
    run = tans("finetune", data, "--model", model, "--zoo", work / "zoo", "--epochs", 1, "--out", work / "out", "--json")
    out = run.stdout + run.stderr
    nan = any(word in out for word in ("NaN", "nan%", "Infinity"))
    ok = run.returncode == 2 and run.stderr.count("\n") == 1 and not nan and not (work / "out").exists()
    return ok, f"exit {run.returncode}{', NaN in output' if nan else ''}: {short(one_line(run.stderr))}"


CASES = {
    "image-bomb": ("refused before decoding; small RSS", case_image_bomb),
    "import-bomb": ("exit 2, one line, nothing read, no zoo", case_import_bomb),
    "orphan-workers": ("children gone <= 10 s after kill -9; rerun finishes", case_orphan_workers),
    "concurrent-builders": ("each unit built once, nothing lost", case_concurrent_builders),
    "nan-split": ("exit 2, one line, no NaN", case_nan_split),
}


# ---------------------------------------------------------------------------------------- driver
def run_case(name: str) -> int:
    """Run one case in this process and print its result as one JSON line."""
    global RSS_DIR
    with tempfile.TemporaryDirectory(prefix=f"tans-{name}-") as work, tempfile.TemporaryDirectory() as rss:
        RSS_DIR = Path(rss)
        start = time.perf_counter()
        try:
            ok, observed = CASES[name][1](Path(work))
        except Exception as exc:  # noqa: BLE001 - a broken case is a failed row, not a crash of the table
            ok, observed = False, f"case crashed: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        observed = observed.replace(work, "$TMP")
        peaks = [int(t) for t in (f.read_text() for f in RSS_DIR.iterdir()) if t]
    peak = max(peaks, default=0) / 1024  # KiB on Linux
    print(json.dumps({"ok": bool(ok), "observed": observed, "peak_rss_mb": round(peak, 1), "seconds": round(seconds, 1)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--launch"]:  # --launch RECORD -- COMMAND...
        return launch(argv[1], argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="Run only this case (repeatable).")
    parser.add_argument("--run-case", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_case:
        return run_case(args.run_case)

    from tans._json import dumps

    rows = []
    for name in args.case or list(CASES):
        proc = subprocess.run([sys.executable, __file__, "--run-case", name], capture_output=True, text=True, env=ENV,
                              timeout=1200)
        try:
            result = json.loads(one_line(proc.stdout))
        except json.JSONDecodeError:
            result = {"ok": False, "observed": f"runner failed: {one_line(proc.stderr)[:200]}", "peak_rss_mb": None,
                      "seconds": None}
        rows.append({"case": name, "expected": CASES[name][0], **result})
        print(f"{'ok  ' if result['ok'] else 'FAIL'} {name}: {result['observed']} ({result['peak_rss_mb']} MB)",
              flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robustness.json").write_text(dumps({"machine": machine, "cases": rows}, indent=2) + "\n")
    lines = [
        "# Robustness: hostile inputs (issue 11)",
        "",
        f"`benchmarks/robustness.py` on {machine}. Each case runs real `tans` commands in a subprocess; "
        "peak RSS is the largest resident set among them (`getrusage(RUSAGE_CHILDREN)` of a small launcher "
    "process per command; pool workers not included).",
        "",
        "| case | expected | observed | peak RSS | seconds | result |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f} MB" if r["peak_rss_mb"] is not None else "-"
        observed = r["observed"].replace("|", "/")
        lines.append(f"| {r['case']} | {r['expected']} | {observed} | {rss} | {r['seconds']} | "
                     f"{'ok' if r['ok'] else '**FAIL**'} |")
    (args.out / "robustness.md").write_text("\n".join(lines) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
