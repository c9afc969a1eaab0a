"""Inference benchmark: the engine against the naive way, end to end from JPEG bytes on disk.

    python -m benchmarks.inference [--n 512] [--batch-sizes 1 8 32 64] [--clients 1 16]
                                   [--repeats 3] [--device auto|cpu|cuda] [--compile]

Measured at 224 px (the speed of a network does not depend on its weights, so the shipped
weights are used at 224 px whatever size they were trained at). Prints one table:

* naive: what a user would write first: Pillow decode, one forward pass per image, fp32.
* bulk bN: ``InferenceEngine.predict_files`` with batches of N (reading ahead, decoding in a
  thread pool, or on the GPU with nvjpeg).
* live cN: N client threads, each sending single photos one after another through
  ``InferenceEngine.submit`` (dynamic batching), with latency per request.

Peak memory is, per run, the highest resident set size sampled every 5 ms (CPU) or
``torch.cuda.max_memory_allocated`` (GPU).
This is a script to run on demand, never a timed test.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.engine import EngineConfig, InferenceEngine
from models.network import CalibratedClassifier, build_network
from models.predictor import Predictor
from models.preprocess import to_model_input
from serving.settings import get_settings

SIZE = 224


def load_predictor(model_dir: Path) -> Predictor:
    if (model_dir / "model.safetensors").is_file():
        predictor = Predictor.from_directory(model_dir)
        predictor.image_size = SIZE
        return predictor
    model = CalibratedClassifier(build_network(pretrained=True)).eval()
    return Predictor(model, image_size=SIZE, version="imagenet-init")


class RssSampler:
    """The peak resident set of this process during one run (``ru_maxrss`` only ever grows)."""

    def __init__(self, period_s: float = 0.005) -> None:
        self.period_s, self.peak_mb = period_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss_mb() -> float:
        statm = Path("/proc/self/statm")
        if not statm.is_file():  # not Linux: fall back to the process-wide peak
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        pages = int(statm.read_text().split()[1])
        return pages * resource.getpagesize() / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            self._stop.wait(self.period_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def naive(paths: list[Path], model: torch.nn.Module, device: torch.device) -> dict[str, float]:
    model = model.to(device).float().eval()
    latencies = []
    started = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        with Image.open(path) as img:
            x = to_model_input(img.convert("RGB"), SIZE)[None].to(device)
        with torch.no_grad():
            model(x).cpu()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    return {
        "img_per_s": len(paths) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p95_ms": percentile(latencies, 95) * 1e3,
    }


def bulk(paths: list[Path], engine: InferenceEngine) -> dict[str, float]:
    started = time.perf_counter()
    count = sum(1 for _ in engine.predict_files(paths))
    elapsed = time.perf_counter() - started
    return {"img_per_s": count / elapsed, "p50_ms": float("nan"), "p95_ms": float("nan")}


def live(paths: list[Path], engine: InferenceEngine, clients: int) -> dict[str, float]:
    blobs = [p.read_bytes() for p in paths]
    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [blobs[i::clients] for i in range(clients)]

    def client(chunk: list[bytes]) -> None:
        for blob in chunk:
            t0 = time.perf_counter()
            engine.predict(blob)
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {
        "img_per_s": len(blobs) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p95_ms": percentile(latencies, 95) * 1e3,
    }


def timed(
    label: str, run: Callable[[], dict[str, float]], device: torch.device, repeats: int = 1
) -> dict:
    """Runs ``run`` ``repeats`` times, keeps the run of median throughput: shared CPUs are noisy."""
    tries = []
    for _ in range(max(1, repeats)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with RssSampler() as sampler:
            figures = run()
        figures["peak_mb"] = (
            torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else sampler.peak_mb
        )
        tries.append(figures)
    figures = sorted(tries, key=lambda f: f["img_per_s"])[len(tries) // 2]
    print(
        f"{label:<14} {figures['img_per_s']:>9.1f} {figures['p50_ms']:>9.1f} "
        f"{figures['p95_ms']:>9.1f} {figures['peak_mb']:>9.0f}",
        flush=True,
    )
    return {"run": label, "repeats": len(tries), **figures}


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="images per measurement")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--model-dir", type=Path, default=settings.shipped_model_dir)
    parser.add_argument("--repeats", type=int, default=3, help="runs each, median kept")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    images = sorted((settings.dataset_dir / "images").glob("*.jpg"))[: args.n]
    predictor = load_predictor(args.model_dir)
    machine = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"device {device} ({machine}); torch {torch.__version__}; {len(images)} JPEGs, {SIZE} px")
    print(f"{'run':<14} {'img/s':>9} {'p50 ms':>9} {'p95 ms':>9} {'peak MB':>9}")

    rows = [timed("naive", lambda: naive(images, predictor.model, device), device, args.repeats)]
    for size in args.batch_sizes:
        engine = InferenceEngine(
            predictor,
            EngineConfig(max_batch_size=size, device=str(device), compile=args.compile),
        )
        engine.predict_bytes([p.read_bytes() for p in images[:size]])  # warm-up, this batch
        rows.append(timed(f"bulk b{size}", lambda e=engine: bulk(images, e), device, args.repeats))
        engine.close()
    if device.type == "cpu":  # what the CPU forward chunks buy: the largest batch, unsplit
        size = max(args.batch_sizes)
        engine = InferenceEngine(
            predictor, EngineConfig(max_batch_size=size, device="cpu", cpu_forward_batch=0)
        )
        engine.predict_bytes([p.read_bytes() for p in images[:size]])
        rows.append(
            timed(f"bulk b{size} 1fwd", lambda e=engine: bulk(images, e), device, args.repeats)
        )
        engine.close()
    for clients in args.clients:
        engine = InferenceEngine(
            predictor,
            EngineConfig(
                max_batch_size=settings.inference_batch_size,
                max_wait_ms=settings.inference_max_wait_ms,
                device=str(device),
                compile=args.compile,
                cpu_forward_batch=settings.inference_cpu_forward_batch,
            ),
        ).start()
        rows.append(
            timed(
                f"live c{clients}",
                lambda e=engine, c=clients: live(images, e, c),
                device,
                args.repeats,
            )
        )
        engine.close()

    best = max(r["img_per_s"] for r in rows[1:])
    print(f"best engine / naive: {best / rows[0]['img_per_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"device": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
