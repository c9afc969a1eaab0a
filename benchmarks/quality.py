"""Benchmark of the photo-quality checks: detection, false alarms and latency on one core.

Run from the repository root: ``python -m benchmarks.quality --n 300`` (``make bench-quality``).
It reads real derm-dev images from ``Settings().dataset_dir``, applies defects made in code at
several strengths (:mod:`benchmarks.synthetic`), adds pictures that are not skin, sends every
picture through the same path as a GP's upload (JPEG bytes -> :func:`pipeline.quality.assess_bytes`)
and prints Markdown tables: detection rate per defect and strength, false alarms on untouched
photos, and latency p50/p95 for a 224 px dermoscopy JPEG and for a 12-MP (4000 x 3000) JPEG, decode
included. The process is pinned to one CPU core with every thread pool limited to one thread.

Strengths marked *reject* are those at which a dermatologist would ask for a new photo; the target
is >= 95 % detection there, <= 3 % false alarms on good photos, and p95 <= 150 ms for 12 MP.

Real photos (added 2026-12, issue 14): the hand-labelled clinical-phone photos
(``benchmarks/clinical_phone_labels.csv``, protocol in docs/photo-labels.md), their hold-out and,
for reference, their fit rows, clinical and dermoscopic photos apart: usable photos accepted
(target >= 90 %), unusable ones caught with the right code (target >= 80 %), per code; then the
same photos with darker skin or too little light *simulated* (:func:`benchmarks.synthetic.
darker_skin`, :func:`benchmarks.synthetic.dim_phone_photo`). ``--real-only`` runs just these.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from benchmarks import synthetic
from models.segmenter import segment
from pipeline.quality import PROBLEM_CODES, LesionSegmenter, QualityResult, assess_bytes
from pipeline.quality_blur import shipped_blur_model
from serving.settings import Settings

Defect = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Condition:
    """One row of the detection table: a defect at one strength and the code it must raise."""

    defect: str
    strength: str
    code: str | None  # None: an untouched or harmless variant that must stay acceptable
    make: Defect | None
    value: float
    reject: bool = False


CONDITIONS: tuple[Condition, ...] = (
    Condition("untouched", "-", None, None, 0.0),
    Condition("dermatoscope ring", "radius 0.8", None, synthetic.dermatoscope_vignette, 0.8),
    Condition("sensor noise", "sigma 4", None, synthetic.sensor_noise, 4.0),
    Condition("focus blur", "sigma 0.4 %", "blur", synthetic.gaussian_blur, 0.004),
    Condition("focus blur", "sigma 0.8 %", "blur", synthetic.gaussian_blur, 0.008),
    Condition("focus blur", "sigma 1.2 %", "blur", synthetic.gaussian_blur, 0.012, True),
    Condition("focus blur", "sigma 2 %", "blur", synthetic.gaussian_blur, 0.02, True),
    Condition("motion blur", "length 2 %", "blur", synthetic.motion_blur, 0.02),
    Condition("motion blur", "length 4 %", "blur", synthetic.motion_blur, 0.04),
    Condition("motion blur", "length 6 %", "blur", synthetic.motion_blur, 0.06, True),
    Condition("dark", "-1 EV", "underexposed", synthetic.exposure_shift, -1.0),
    Condition("dark", "-2 EV", "underexposed", synthetic.exposure_shift, -2.0),
    Condition("dark", "-3 EV", "underexposed", synthetic.exposure_shift, -3.0, True),
    Condition("bright", "+1 EV", "overexposed", synthetic.exposure_shift, 1.0),
    Condition("bright", "+1.5 EV", "overexposed", synthetic.exposure_shift, 1.5),
    Condition("bright", "+2 EV", "overexposed", synthetic.exposure_shift, 2.0, True),
    Condition("downscale", "160 px", "low_resolution", synthetic.downscale, 160, True),
    Condition("downscale", "112 px", "low_resolution", synthetic.downscale, 112, True),
    Condition("downscale", "64 px", "low_resolution", synthetic.downscale, 64, True),
    Condition("off-centre crop", "centre at 25 %", "framing", synthetic.off_centre_crop, 0.25),
    Condition("off-centre crop", "centre at 10 %", "framing", synthetic.off_centre_crop, 0.10),
    Condition("off-centre crop", "centre on edge", "framing", synthetic.off_centre_crop, 0.0, True),
    Condition("glare", "0.5 % of frame", "glare", synthetic.glare, 0.005),
    Condition("glare", "1 % of frame", "glare", synthetic.glare, 0.01),
    Condition("glare", "3 % of frame", "glare", synthetic.glare, 0.03, True),
    Condition("colour cast", "gain 1.3", "colour_cast", synthetic.colour_cast, 1.3),
    Condition("colour cast", "gain 1.6", "colour_cast", synthetic.colour_cast, 1.6),
    Condition("colour cast", "gain 2.0", "colour_cast", synthetic.colour_cast, 2.0, True),
    # Listed last so that every row above keeps the random draws (seed + row index) it had before
    # these rows were added on 2026-12-01: earlier tables stay reproducible.
    Condition("focus blur + noise", "sigma 0.8 %", "blur", synthetic.noisy_gaussian_blur, 0.008),
    Condition(
        "focus blur + noise", "sigma 1.2 %", "blur", synthetic.noisy_gaussian_blur, 0.012, True
    ),
    Condition("focus blur + noise", "sigma 2 %", "blur", synthetic.noisy_gaussian_blur, 0.02, True),
    Condition("motion blur + noise", "length 4 %", "blur", synthetic.noisy_motion_blur, 0.04),
    Condition("motion blur + noise", "length 6 %", "blur", synthetic.noisy_motion_blur, 0.06, True),
)


#: The learned lesion outliner given to the checks, as the serving code gives it;
#: ``--no-segmenter`` measures the colour rule alone (the figures before 2026-12-07).
LESION_SEGMENTER: LesionSegmenter | None = segment


def _assess(data: bytes) -> QualityResult:
    """The GP's path: :func:`assess_bytes` with the outliner the run was asked for."""
    return assess_bytes(data, lesion_segmenter=LESION_SEGMENTER)


def pin_to_one_core() -> str:
    """Run on a single core with single-threaded numpy, OpenCV and BLAS; say which core."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        where = f"core {core}"
    else:  # macOS: no affinity API; thread limits still apply
        where = "one thread"
    cv2.setNumThreads(1)
    threadpool_limits(1)
    return where


def _load() -> str:
    """The 1-minute load average (other work on the machine slows every timing)."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_sample(dataset_dir: Path, n: int | None, seed: int) -> list[tuple[str, bytes]]:
    """``n`` derm-dev images (one per lesion, reproducible from ``seed``; ``None``: all of them)
    as their JPEG bytes.

    Lesions the shipped blur detector was fitted on (:mod:`pipeline.quality_blur`, listed in its
    model file) are left out, so the detector is measured on photos it has never seen."""
    metadata = pd.read_csv(dataset_dir / "metadata.csv")
    fitted = set(shipped_blur_model().fit.get("lesion_ids", ()))
    per_lesion = metadata[~metadata["lesion_id"].isin(fitted)].drop_duplicates("lesion_id")
    count = len(per_lesion) if n is None else min(n, len(per_lesion))
    sample = per_lesion.sample(n=count, random_state=seed)
    return [
        (image_id, (dataset_dir / "images" / f"{image_id}.jpg").read_bytes())
        for image_id in sample["image_id"]
    ]


def decode_rgb(data: bytes) -> np.ndarray:
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(rgb[:, :, ::-1])


@dataclass
class _Tally:
    """What one condition raised over a set of pictures."""

    hits: int = 0
    rejected: int = 0
    raised: Counter[str] = field(default_factory=Counter)


def _tally(condition: Condition, images: Iterable[np.ndarray], rng: np.random.Generator) -> _Tally:
    """Apply ``condition`` to each image and send it through the GP's path (JPEG bytes, then
    :func:`assess_bytes`), counting expected codes, rejections and every code raised."""
    tally = _Tally()
    for rgb in images:
        picture = rgb if condition.make is None else condition.make(rgb, condition.value, rng)
        result = _assess(synthetic.jpeg_bytes(picture))
        tally.rejected += not result.acceptable
        tally.hits += condition.code in result.codes if condition.code else 0
        tally.raised.update(result.codes)
    return tally


def detection_table(images: Sequence[np.ndarray], seed: int) -> pd.DataFrame:
    """One row per condition: share of pictures with the expected code, and share rejected."""
    rows = []
    for index, condition in enumerate(CONDITIONS):
        tally = _tally(condition, images, np.random.default_rng(seed + index))
        rows.append(
            {
                "defect": condition.defect,
                "strength": condition.strength,
                "code": condition.code or "(none expected)",
                "reject": "yes" if condition.reject else "",
                "detected": tally.hits / len(images) if condition.code else None,
                "rejected": tally.rejected / len(images),
                "codes raised": ", ".join(f"{c} {k}" for c, k in tally.raised.most_common(3)),
                "n": len(images),
            }
        )
    return pd.DataFrame(rows)


def good_photo_table(samples: Sequence[tuple[str, bytes]], seed: int) -> pd.DataFrame:
    """False alarms on many good photos: each variant that must stay acceptable (untouched,
    dermatoscope ring, sensor noise), one row each, with the codes raised. A 300-photo sample
    gives a false-alarm rate to within about 2 points either way; every photo narrows it.
    Photos are decoded one at a time: thousands need not all be in memory."""
    good = [c for c in CONDITIONS if c.code is None]
    rows = []
    for index, condition in enumerate(good):
        images = (decode_rgb(data) for _, data in samples)
        tally = _tally(condition, images, np.random.default_rng(seed + 1000 + index))
        rows.append(
            {
                "photo": condition.defect,
                "rejected": tally.rejected / len(samples),
                "codes raised": ", ".join(f"{c} {k}" for c, k in tally.raised.most_common()),
                "n": len(samples),
            }
        )
    return pd.DataFrame(rows)


def non_skin_table(count: int, seed: int) -> pd.DataFrame:
    """Per kind of non-skin picture: share flagged ``not_skin`` and share rejected at all."""
    rows = []
    for index, (kind, make) in enumerate(synthetic.NON_SKIN.items()):
        rng = np.random.default_rng(seed + 100 + index)
        hits = rejected = 0
        for _ in range(count):
            size = (int(rng.integers(320, 1600)), int(rng.integers(320, 1600)))
            result = _assess(synthetic.jpeg_bytes(make(size, rng)))
            hits += "not_skin" in result.codes
            rejected += not result.acceptable
        rows.append(
            {"picture": kind, "not_skin": hits / count, "rejected": rejected / count, "n": count}
        )
    return pd.DataFrame(rows)


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    milliseconds = np.array(seconds) * 1000.0
    return float(np.percentile(milliseconds, 50)), float(np.percentile(milliseconds, 95))


def latency_table(samples: Sequence[tuple[str, bytes]], runs: int, seed: int) -> pd.DataFrame:
    """Wall-clock time of ``assess_bytes`` (decode included) per photo, after one warm-up."""
    rng = np.random.default_rng(seed)
    small = [data for _, data in samples[:runs]]
    large = []
    for _, data in samples[: max(1, runs // 5)]:
        photo = synthetic.phone_photo(decode_rgb(data), (4000, 3000), rng)
        large.append(synthetic.jpeg_bytes(photo, quality=92))
    rows = []
    for label, corpus in (("224 px dermoscopy JPEG", small), ("12-MP JPEG 4000x3000", large)):
        _assess(corpus[0])  # warm-up: imports, first allocations
        timings = []
        for i in range(max(runs, len(corpus))):
            data = corpus[i % len(corpus)]
            start = time.perf_counter()
            _assess(data)
            timings.append(time.perf_counter() - start)
        p50, p95 = _percentiles(timings)
        size_mb = statistics.mean(len(data) for data in corpus) / 1e6
        rows.append(
            {
                "photo": label,
                "file size (MB)": round(size_mb, 2),
                "p50 (ms)": round(p50, 1),
                "p95 (ms)": round(p95, 1),
                "calls": len(timings),
            }
        )
    return pd.DataFrame(rows)


# --- real photos: the labelled clinical-phone set ----------------------------------------------

#: Hand labels of every clinical-phone photo (docs/photo-labels.md).
LABELS = Path(__file__).with_name("clinical_phone_labels.csv")
#: Order in which the photos' groups are reported: phone photos first, then dermoscopy taken with a
#: phone (the 384 x 288 ones), then the one photo the labellers could not place.
MODALITIES = ("clinical", "dermoscopic", "unsure")


def expected_code(defects: str) -> str | None:
    """The code the check must raise for an unusable photo: the first label defect that is one of
    the check's codes, a full defect before a ``(mild)`` one (the labellers list the reason the
    photo is unusable first). ``None`` when the label names none."""
    names = [d.strip() for d in str(defects).split(";") if d.strip() and d.strip() != "nan"]
    full = [d for d in names if not d.endswith("(mild)") and d in PROBLEM_CODES]
    mild = [d.removesuffix("(mild)") for d in names if d.endswith("(mild)")]
    mild = [d for d in mild if d in PROBLEM_CODES]
    return (full or mild or [None])[0]


def load_labels(path: Path = LABELS) -> pd.DataFrame:
    """The labels, with ``expected`` (see :func:`expected_code`) for the unusable photos."""
    labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    labels["usable"] = labels["usable"] == "yes"
    labels["expected"] = [
        None if usable else expected_code(defects)
        for usable, defects in zip(labels["usable"], labels["defects"], strict=True)
    ]
    return labels


#: Photos made from each labelled one, *simulated*: darker skin in good light, which must be
#: accepted as the photo itself is, and too little light as a phone records it, which must be
#: told ``underexposed``.
SIMULATIONS: tuple[tuple[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]], ...] = (
    ("dark skin, ITA -35 deg", lambda rgb, rng: synthetic.darker_skin(rgb, -35.0, rng)),
    ("dark skin, ITA -45 deg", lambda rgb, rng: synthetic.darker_skin(rgb, -45.0, rng)),
    ("1/10 of the light, phone", lambda rgb, rng: synthetic.dim_phone_photo(rgb, 0.1, rng)),
    ("1/30 of the light, phone", lambda rgb, rng: synthetic.dim_phone_photo(rgb, 1 / 30, rng)),
)


def real_verdicts(
    labels: pd.DataFrame, phone_dir: Path, seed: int, simulate: bool = True
) -> pd.DataFrame:
    """Every labelled photo's verdict: the file as the phone wrote it (``variant`` "real"), and,
    when ``simulate``, each of :data:`SIMULATIONS` made from it (re-encoded as JPEG quality 90)."""
    rows = []
    for index, label in enumerate(labels.itertuples(index=False)):
        data = (phone_dir / label.file).read_bytes()
        base = {
            "file": label.file,
            "split": label.split,
            "modality": label.modality,
            "usable": label.usable,
            "expected": label.expected,
        }
        rows.append({**base, "variant": "real", "codes": _assess(data).codes})
        if not simulate:
            continue
        rgb = decode_rgb(data)
        for offset, (name, make) in enumerate(SIMULATIONS):
            rng = np.random.default_rng(seed + 10_000 * offset + index)
            picture = synthetic.jpeg_bytes(make(rgb, rng))
            rows.append({**base, "variant": name, "codes": _assess(picture).codes})
    return pd.DataFrame(rows)


def _groups(verdicts: pd.DataFrame) -> Iterable[tuple[str, str, pd.DataFrame]]:
    for split in ("holdout", "fit"):
        for modality in MODALITIES:
            group = verdicts[(verdicts["split"] == split) & (verdicts["modality"] == modality)]
            if len(group):
                yield split, modality, group


def real_photo_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per split and modality: usable photos accepted; unusable ones caught with the right code
    (and rejected at all); the codes raised on usable photos (what the GP is wrongly told)."""
    real = verdicts[verdicts["variant"] == "real"]
    rows = []
    for split, modality, group in _groups(real):
        usable, unusable = group[group["usable"]], group[~group["usable"]]
        right = [
            e in codes for e, codes in zip(unusable["expected"], unusable["codes"], strict=True)
        ]
        wrong: Counter[str] = Counter(c for codes in usable["codes"] for c in codes)
        rows.append(
            {
                "split": split,
                "modality": modality,
                "photos": len(group),
                "usable": len(usable),
                "usable accepted": _share(sum(not c for c in usable["codes"]), len(usable)),
                "unusable": len(unusable),
                "caught, right code": _share(sum(right), len(unusable)),
                "unusable rejected": _share(sum(bool(c) for c in unusable["codes"]), len(unusable)),
                "codes on usable photos": ", ".join(f"{c} {k}" for c, k in wrong.most_common()),
            }
        )
    return pd.DataFrame(rows)


def real_per_code_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per split, modality and expected code of the unusable photos: how many carry that code."""
    real = verdicts[verdicts["variant"] == "real"]
    rows = []
    for split, modality, group in _groups(real):
        unusable = group[~group["usable"]]
        for code in [c for c in PROBLEM_CODES if c in set(unusable["expected"])]:
            of_code = unusable[unusable["expected"] == code]
            caught = sum(code in codes for codes in of_code["codes"])
            told = Counter(c for codes in of_code["codes"] for c in codes)
            rows.append(
                {
                    "split": split,
                    "modality": modality,
                    "label": code,
                    "unusable": len(of_code),
                    "caught": f"{caught} ({_share(caught, len(of_code))})",
                    "codes raised": ", ".join(f"{c} {k}" for c, k in told.most_common()),
                }
            )
    return pd.DataFrame(rows)


def simulated_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per split, modality and simulation: share accepted, share accepted among the photos whose
    real file is accepted (what the simulation alone changes), and the exposure, skin and colour
    codes raised."""
    real = verdicts[verdicts["variant"] == "real"].set_index("file")["codes"]
    rows = []
    for name, _ in SIMULATIONS:
        made = verdicts[verdicts["variant"] == name]
        for split, modality, group in _groups(made):
            kept = group[[not real[f] for f in group["file"]]]
            rows.append(
                {
                    "simulated": name,
                    "split": split,
                    "modality": modality,
                    "photos": len(group),
                    "accepted": _share(sum(not c for c in group["codes"]), len(group)),
                    "accepted, of those accepted real": _share(
                        sum(not c for c in kept["codes"]), len(kept)
                    ),
                    "underexposed": _share(
                        sum("underexposed" in c for c in group["codes"]), len(group)
                    ),
                    "not_skin": _share(sum("not_skin" in c for c in group["codes"]), len(group)),
                    "colour_cast": _share(
                        sum("colour_cast" in c for c in group["codes"]), len(group)
                    ),
                }
            )
    return pd.DataFrame(rows)


def _share(count: int, total: int) -> str:
    return "-" if total == 0 else f"{100 * count / total:.1f} %"


def write_real_tables(out: TextIO, phone_dir: Path, seed: int, simulate: bool) -> None:
    """The real-photo section of the report (see the module's docstring)."""
    labels = load_labels()
    verdicts = real_verdicts(labels, phone_dir, seed, simulate)
    out.write(
        "## Real photos: labelled clinical-phone photos "
        "(`benchmarks/clinical_phone_labels.csv`)\n\n"
    )
    out.write(
        "Each file as the phone wrote it, through `assess_bytes`. *Usable accepted*: usable photos "
        "with no problem (target >= 90 %). *Caught, right code*: unusable photos carrying the "
        "code of their first-listed label defect (target >= 80 %; the hold-out has few, see the "
        "`unusable` column). The hold-out was never used to fit or tune anything.\n\n"
    )
    out.write(markdown(real_photo_table(verdicts)) + "\n\n")
    out.write("### Unusable real photos, per labelled code\n\n")
    out.write(markdown(real_per_code_table(verdicts)) + "\n\n")
    if simulate:
        out.write("### The same photos, simulated: darker skin, too little light\n\n")
        out.write(
            "*Simulated*, not real: skin ITA lowered in CIELAB, lesion kept darker, sheen kept "
            "(`synthetic.darker_skin`); too little light in linear light with a phone's sensor "
            "noise and crushed shadows (`synthetic.dim_phone_photo`). Dark skin must be accepted "
            "as the real photo is; too little light must be told `underexposed`.\n\n"
        )
        out.write(markdown(simulated_table(verdicts)) + "\n\n")


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (pandas' own needs the optional ``tabulate``)."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _percent(value: float | None) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * value:.1f} %"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="derm-dev images per condition")
    parser.add_argument("--non-skin", type=int, default=50, help="pictures per non-skin kind")
    parser.add_argument("--latency-runs", type=int, default=60, help="timed calls per size")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--good",
        type=int,
        default=-1,
        help="good photos for the false-alarm table (default -1: every lesion's; 0: skip)",
    )
    parser.add_argument("--dataset-dir", type=Path, default=None, help="default: settings")
    parser.add_argument(
        "--phone-dir",
        type=Path,
        default=None,
        help="clinical-phone photos (default: clinical-phone/images beside the data set)",
    )
    real = parser.add_mutually_exclusive_group()
    real.add_argument(
        "--real-only", action="store_true", help="only the real-photo tables (a few minutes)"
    )
    real.add_argument("--no-real", action="store_true", help="skip the real-photo tables")
    parser.add_argument(
        "--no-simulated",
        action="store_true",
        help="real-photo tables without the simulated dark-skin and dim-light variants",
    )
    parser.add_argument(
        "--no-segmenter",
        action="store_true",
        help="judge framing by the colour rule alone (no learned lesion outline)",
    )
    args = parser.parse_args(argv)
    global LESION_SEGMENTER
    LESION_SEGMENTER = None if args.no_segmenter else segment

    where = pin_to_one_core()
    dataset_dir = args.dataset_dir or Settings().dataset_dir
    phone_dir = args.phone_dir or dataset_dir.parent / "clinical-phone" / "images"
    started = time.perf_counter()

    out = sys.stdout
    out.write("# Photo-quality benchmark\n\n")
    command = " ".join(
        ["python -m benchmarks.quality", *(argv if argv is not None else sys.argv[1:])]
    )
    out.write(
        f"Command: `{command.strip()}` (seed {args.seed})  \n"
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, pinned to {where}; "
        f"load average at start {_load()}; "
        f"Python {platform.python_version()}, OpenCV {cv2.__version__}, numpy {np.__version__}\n\n"
    )
    if not args.no_real:
        write_real_tables(out, phone_dir, args.seed, simulate=not args.no_simulated)
    if args.real_only:
        out.write(f"Benchmark wall time: {time.perf_counter() - started:.0f} s\n")
        return 0
    samples = load_sample(dataset_dir, args.n, args.seed)
    images = [decode_rgb(data) for _, data in samples]
    latency = latency_table(samples, args.latency_runs, args.seed)
    out.write("## Latency per photo, one core, decode included (`assess_bytes`)\n\n")
    out.write(markdown(latency) + "\n\n")

    detection = detection_table(images, args.seed)
    good = detection[detection["code"] == "(none expected)"]
    out.write(f"## Detection on {len(images)} derm-dev images (one per lesion)\n\n")
    table = detection.assign(
        detected=detection["detected"].map(_percent), rejected=detection["rejected"].map(_percent)
    )
    out.write(markdown(table.drop(columns="n")) + "\n\n")
    out.write(
        "False alarms (any problem on a good photo): "
        + ", ".join(f"{row.defect} {_percent(row.rejected)}" for row in good.itertuples())
        + "\n\n"
    )
    reject = detection[detection["reject"] == "yes"]
    out.write(
        f"Lowest detection at a *reject* strength: {_percent(reject['detected'].min())} "
        f"({reject.loc[reject['detected'].idxmin(), 'defect']}, "
        f"{reject.loc[reject['detected'].idxmin(), 'strength']})\n\n"
    )

    if args.good:
        pool = load_sample(dataset_dir, None if args.good < 0 else args.good, args.seed)
        many = good_photo_table(pool, args.seed)
        out.write(f"## False alarms on {len(pool)} good derm-dev photos (one per lesion)\n\n")
        view = many.assign(rejected=many["rejected"].map(_percent))
        out.write(markdown(view) + "\n\n")

    non_skin = non_skin_table(args.non_skin, args.seed)
    out.write("## Pictures that are not skin (made in code)\n\n")
    non_skin_view = non_skin.assign(
        not_skin=non_skin["not_skin"].map(_percent), rejected=non_skin["rejected"].map(_percent)
    )
    out.write(markdown(non_skin_view) + "\n\n")
    out.write(f"Benchmark wall time: {time.perf_counter() - started:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
