"""The container images and the consortium in containers: build and run times, sizes.

    .venv/bin/python bench/containers.py                 # build (cached layers kept) + run
    .venv/bin/python bench/containers.py --cold          # from nothing: removes EVERY unused
                                                         # image of the engine first

What a hospital's IT team and a coordinator live through: ``deploy/docker/build.sh``
(cold: no base, no layer; then again with nothing changed), and
``deploy/docker/consortium.sh`` up → run → verify → down with the sample consortium
(3 hospitals, TLS, SuperNode authentication), each phase timed. Results:
``bench/results/containers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "deploy" / "docker"


def _timed(cmd: list[str], env: dict) -> tuple[float, str]:
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    print(f"  {seconds:.1f} s", flush=True)
    return seconds, res.stdout


def _version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise SystemExit("no version in pyproject.toml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default=os.environ.get("FEDSYNTH_ENGINE", "podman"))
    ap.add_argument("--cold", action="store_true", help="remove every unused image first")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/fedsynth-containers-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", type=int, default=40, help="patients per hospital")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "containers.json")
    args = ap.parse_args()
    engine = args.engine
    version = _version()
    env = {
        **os.environ,
        "FEDSYNTH_ENGINE": engine,
        "FEDSYNTH_WORKDIR": str(args.workdir),
        "FEDSYNTH_PROJECT": "fedsynth-bench",
        "FEDSYNTH_PORT": "19392",
        "FEDSYNTH_SAMPLE_CASES": str(args.cases),
        "FEDSYNTH_IMAGE_SIZE": str(args.image_size),
        "RUN_NAME": "bench",
    }
    if args.cold:
        for image in (
            f"fedsynth-client:{version}",
            f"fedsynth-server:{version}",
            "localhost/fedsynth-base:bookworm",
        ):
            subprocess.run([engine, "rmi", "-f", image], capture_output=True)
        subprocess.run([engine, "image", "prune", "-a", "-f"], capture_output=True)
        if engine.endswith("docker"):
            subprocess.run([engine, "builder", "prune", "-a", "-f"], capture_output=True)
    shutil.rmtree(args.workdir, ignore_errors=True)

    build = DOCKER / "build.sh"
    first, log = _timed(["bash", str(build)], env)
    again, _ = _timed(["bash", str(build)], env)
    sizes = {}
    for target in ("client", "server"):
        res = subprocess.run(
            [engine, "image", "inspect", "--format", "{{.Size}}", f"fedsynth-{target}:{version}"],
            capture_output=True,
            text=True,
        )
        sizes[target] = int(res.stdout.strip())
    script = str(DOCKER / "consortium.sh")
    phases = {}
    for phase, extra in (
        ("up", []),
        ("run", [f"num-server-rounds={args.rounds} min-sites=3 round-timeout=600"]),
        ("verify", []),
        ("down", []),
    ):
        phases[phase], out = _timed(["bash", script, phase, *extra], env)
        if phase == "verify":
            verified = out.strip().splitlines()[-1]
    metrics = args.workdir / "runs" / "bench" / "metrics.jsonl"
    rounds = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "engine": subprocess.run(
            [engine, "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "cold": args.cold,
        "base": next((x for x in log.splitlines() if x.startswith("build: base ")), ""),
        "build_s": round(first, 1),
        "rebuild_unchanged_s": round(again, 1),
        "image_bytes": sizes,
        "consortium": {
            "sites": 3,
            "cases_per_site": args.cases,
            "image_size": args.image_size,
            "rounds": args.rounds,
            "phases_s": {k: round(v, 1) for k, v in phases.items()},
            "total_s": round(sum(phases.values()), 1),
            "final_dice": rounds[-1]["heldout"]["overall"]["dice"],
            "verify": verified,
        },
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
