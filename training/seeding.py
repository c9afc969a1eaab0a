"""Making a run repeatable: one seed drives Python, NumPy, torch and the data-loader workers."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed every random source a training run touches; returns the generator for the loader."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def seed_worker(worker_id: int) -> None:
    """Give each data-loader worker its own, reproducible NumPy and Python streams.

    albumentations draws from NumPy and ``random``; without this every worker would repeat the
    same augmentations, or differ from run to run.
    """
    import cv2  # albumentations' engine; its own thread pool would fight the main process's

    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed + worker_id)
    random.seed(worker_seed + worker_id)
