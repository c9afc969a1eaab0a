"""The inference engine: one model per process, dynamic batching for live requests, a pipelined
bulk path for archives, and a hot swap when the champion changes.

Why batching: a forward pass over 32 photos costs far less than 32 passes over one, on a GPU and,
less so, on a CPU. Live requests arrive one at a time, so :meth:`InferenceEngine.submit` queues
them and a single worker thread runs whatever is waiting, up to ``max_batch_size`` photos or
``max_wait_ms`` after the first arrived, in one forward pass.

On a GPU the engine also decodes JPEGs on the device (``torchvision.io.decode_jpeg``), resizes
and normalises there, runs in bf16 with ``channels_last``, copies from pinned host memory without
blocking, and reads the next batch's files while the current one computes. On a CPU the same API
decodes with Pillow (reduced-size JPEG decoding for large photos) in a thread pool.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from models.device import resolve_device
from models.network import IMAGENET_MEAN, IMAGENET_STD
from models.predictor import Prediction, Predictor, predictions_from_probabilities
from models.preprocess import square_resize

logger = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs; ``serving.settings`` fills it from the environment."""

    max_batch_size: int = 32
    max_wait_ms: float = 10.0
    device: str = "auto"
    mixed_precision: bool = True
    channels_last: bool = True
    compile: bool = False
    gpu_decode: bool = True
    threads: int = 0
    decode_workers: int = 2
    # On a CPU a forward pass is split into chunks of this many photos: measured on the project's
    # 2-core machine (efficientnet_lite0, 224 px, channels_last, forward only) about 210 img/s at
    # 4, 170 at 8, 85 at 32 and 105 one by one, because larger batches spill the activations out
    # of the cache. GPUs take the whole batch at once.
    cpu_forward_batch: int = 4


class DecodeError(ValueError):
    """A photo's bytes could not be turned into a model input."""


def decode_for_model(data: bytes, size: int) -> torch.Tensor:
    """JPEG/PNG/HEIF bytes -> (3, size, size) uint8 tensor on the CPU, as the model sees it.

    Large JPEGs are decoded at a reduced scale (Pillow's draft mode, at least twice the target
    size) so that a 12-MP photo costs a fraction of a full decode.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft("RGB", (size * 2, size * 2))
            img = ImageOps.exif_transpose(img)
            pixels = np.asarray(square_resize(img, size), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"cannot decode image: {exc}") from exc
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


class InferenceEngine:
    """Scores photos with one loaded model; thread-safe; see the module docstring."""

    def __init__(self, predictor: Predictor, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.device = resolve_device(self.config.device)
        if self.config.threads and self.device.type == "cpu":
            torch.set_num_threads(self.config.threads)
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[object, Future[Prediction]] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._decoders = ThreadPoolExecutor(
            max_workers=max(1, self.config.decode_workers), thread_name_prefix="decode"
        )
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255
        self._mean, self._std = mean, std
        self.batches_run = 0
        self.images_run = 0
        self._last_batch_size = 0
        self._install(predictor)

    # ----------------------------------------------------------------------------- model
    def _install(self, predictor: Predictor) -> None:
        """Prepare ``predictor`` for this device and warm it up, then make it current."""
        model = predictor.model.to(self.device).eval()
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        forward = torch.compile(model) if self.config.compile else model
        size = predictor.image_size
        # Warm up at the shapes that will run (oneDNN and cuDNN pick their kernels per shape).
        shapes = {1, self._forward_step(self.config.max_batch_size)}
        with torch.inference_mode(), self._autocast():
            for count in sorted(shapes):
                forward(self._layout(torch.zeros(count, 3, size, size, device=self.device)))
        with self._lock:
            self._predictor, self._forward = predictor, forward
        logger.info("engine ready: %s on %s", predictor.version, self.device)

    def swap(self, predictor: Predictor) -> None:
        """Replace the model; batches already running finish on the old one, none is dropped."""
        self._install(predictor)

    @property
    def version(self) -> str:
        return self._predictor.version

    @property
    def image_size(self) -> int:
        return self._predictor.image_size

    def _autocast(self) -> torch.autocast | _NullContext:
        if self.config.mixed_precision and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return _NullContext()

    def _forward_step(self, batch_size: int) -> int:
        """How many photos one forward pass takes out of a batch of ``batch_size``."""
        if self.device.type == "cpu" and self.config.cpu_forward_batch > 0:
            return min(batch_size, self.config.cpu_forward_batch)
        return batch_size

    def _layout(self, batch: torch.Tensor) -> torch.Tensor:
        if self.config.channels_last:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    # ------------------------------------------------------------------------- decoding
    def _use_gpu_decode(self) -> bool:
        return self.device.type == "cuda" and self.config.gpu_decode

    def _pixels_on_device(self, blobs: Sequence[bytes]) -> tuple[torch.Tensor, list[int]]:
        """Decode ``blobs`` into a (N, 3, S, S) uint8 batch on the device; returns failures too."""
        size = self.image_size
        out: list[torch.Tensor | None] = [None] * len(blobs)
        gpu_jpegs = (
            [i for i, b in enumerate(blobs) if b[:3] == JPEG_MAGIC]
            if self._use_gpu_decode()
            else []
        )
        if gpu_jpegs:
            from torchvision.io import ImageReadMode, decode_jpeg

            raw = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in gpu_jpegs]
            try:
                decoded = decode_jpeg(
                    raw, mode=ImageReadMode.RGB, device=self.device, apply_exif_orientation=True
                )
                for i, image in zip(gpu_jpegs, decoded, strict=True):
                    out[i] = _square_resize_tensor(image, size)
            except RuntimeError:  # a JPEG nvjpeg refuses: fall back to the CPU for the batch
                logger.debug("GPU JPEG decode failed; decoding this batch on the CPU")
        pending = [i for i, t in enumerate(out) if t is None]
        futures = {i: self._decoders.submit(decode_for_model, blobs[i], size) for i in pending}
        failed: list[int] = []
        cpu_tensors: dict[int, torch.Tensor] = {}
        for i, future in futures.items():
            try:
                cpu_tensors[i] = future.result()
            except DecodeError:
                failed.append(i)
        if cpu_tensors:
            stacked = torch.stack(list(cpu_tensors.values()))
            if self.device.type == "cuda":
                stacked = stacked.pin_memory().to(self.device, non_blocking=True)
            for i, tensor in zip(cpu_tensors, stacked, strict=True):
                out[i] = tensor
        good = [t for t in out if t is not None]
        if not good:
            return torch.empty(0, 3, size, size, dtype=torch.uint8, device=self.device), failed
        return torch.stack(good), failed

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() - self._mean) / self._std

    # --------------------------------------------------------------------------- compute
    def _run(self, pixels: torch.Tensor) -> list[Prediction]:
        with self._lock:
            predictor, forward = self._predictor, self._forward
        step = self._forward_step(len(pixels))
        with torch.inference_mode(), self._autocast():
            probs = torch.cat(
                [
                    forward(self._layout(self._normalise(pixels[i : i + step]))).float()
                    for i in range(0, len(pixels), max(1, step))
                ]
            )
        self.batches_run += 1
        self.images_run += len(pixels)
        return predictions_from_probabilities(probs, predictor.model.class_prior, predictor.version)

    def predict_bytes(self, blobs: Sequence[bytes]) -> list[Prediction | DecodeError]:
        """Score a batch of encoded photos; an undecodable one yields a DecodeError in its place."""
        results: list[Prediction | DecodeError] = []
        for start in range(0, len(blobs), self.config.max_batch_size):
            chunk = blobs[start : start + self.config.max_batch_size]
            pixels, failed = self._pixels_on_device(chunk)
            scored = iter(self._run(pixels)) if len(pixels) else iter(())
            for i in range(len(chunk)):
                results.append(DecodeError("cannot decode image") if i in failed else next(scored))
        return results

    def predict_images(self, images: Sequence[Image.Image | np.ndarray]) -> list[Prediction]:
        """Score already-decoded photos (the service's path: intake has decoded them)."""
        size = self.image_size
        predictions: list[Prediction] = []
        for start in range(0, len(images), self.config.max_batch_size):
            chunk = images[start : start + self.config.max_batch_size]
            pixels = torch.stack(
                [
                    torch.from_numpy(np.asarray(square_resize(im, size)).copy()).permute(2, 0, 1)
                    for im in chunk
                ]
            )
            if self.device.type == "cuda":
                pixels = pixels.pin_memory().to(self.device, non_blocking=True)
            predictions.extend(self._run(pixels))
        return predictions

    def predict_files(
        self, paths: Iterable[Path], prefetch: int = 2
    ) -> Iterator[tuple[Path, Prediction | Exception]]:
        """Bulk scoring: reads the next batches' files while the current batch computes."""
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reader")
        batches: queue.Queue[Future[list[tuple[Path, bytes | OSError]]]] = queue.Queue()

        def read(batch: list[Path]) -> list[tuple[Path, bytes | OSError]]:
            out: list[tuple[Path, bytes | OSError]] = []
            for path in batch:
                try:
                    out.append((path, path.read_bytes()))
                except OSError as exc:
                    out.append((path, exc))
            return out

        chunks = _chunks(paths, self.config.max_batch_size)
        try:
            for _ in range(prefetch):
                chunk = next(chunks, None)
                if chunk is None:
                    break
                batches.put(reader.submit(read, chunk))
            while not batches.empty():
                loaded = batches.get().result()
                chunk = next(chunks, None)
                if chunk is not None:
                    batches.put(reader.submit(read, chunk))
                readable = [(p, b) for p, b in loaded if isinstance(b, bytes)]
                scored = dict(
                    zip(
                        [p for p, _ in readable],
                        self.predict_bytes([b for _, b in readable]),
                        strict=True,
                    )
                )
                for path, blob in loaded:
                    yield path, (blob if isinstance(blob, OSError) else scored[path])
        finally:
            reader.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------- live batching
    def start(self) -> InferenceEngine:
        """Start the batching worker (idempotent)."""
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._serve, name="inference", daemon=True)
            self._worker.start()
        return self

    def close(self) -> None:
        """Finish queued requests, then stop the worker."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)
            self._worker = None
        self._decoders.shutdown(wait=True)

    def submit(self, photo: bytes | Image.Image | np.ndarray) -> Future[Prediction]:
        """Queue one photo for scoring; the future resolves when its batch has run."""
        if self._worker is None:
            self.start()
        future: Future[Prediction] = Future()
        self._queue.put((photo, future))
        return future

    def predict(self, photo: bytes | Image.Image | np.ndarray, timeout: float = 60) -> Prediction:
        """Score one photo through the shared batches (blocks until done)."""
        return self.submit(photo).result(timeout=timeout)

    def _serve(self) -> None:
        wait = self.config.max_wait_ms / 1000
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            # Wait for company only where there is some: a lone request on a quiet engine goes at
            # once (no max_wait added to its latency); under load, requests queue up while a batch
            # computes, and the wait gathers them into the next one.
            alone = self._queue.empty() and self._last_batch_size <= 1
            deadline = time.perf_counter() + (0.0 if alone else wait)
            stop = False
            while len(batch) < self.config.max_batch_size:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._last_batch_size = len(batch)
            self._run_live(batch)
            if stop:
                return

    def _run_live(self, batch: list[tuple[object, Future[Prediction]]]) -> None:
        try:
            blobs = [(i, p) for i, (p, _) in enumerate(batch) if isinstance(p, bytes)]
            images = [(i, p) for i, (p, _) in enumerate(batch) if not isinstance(p, bytes)]
            results: dict[int, Prediction | Exception] = {}
            if blobs:
                for (i, _), r in zip(blobs, self.predict_bytes([b for _, b in blobs]), strict=True):
                    results[i] = r
            if images:
                for (i, _), r in zip(
                    images, self.predict_images([p for _, p in images]), strict=True
                ):
                    results[i] = r
            for i, (_, future) in enumerate(batch):
                outcome = results[i]
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        except Exception as exc:
            logger.exception("inference batch failed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _square_resize_tensor(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre square crop and antialiased bilinear resize of a (3, H, W) uint8 device tensor."""
    from torchvision.transforms.v2 import functional as tvf

    _, height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[:, top : top + side, left : left + side]
    return tvf.resize(square, [size, size], antialias=True)


def _chunks(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
