"""Watermark embed speed against the invisible-watermark library, on one core, in the same run.

    .venv/bin/python bench/watermark.py [--frames 10] [--height 1080 --width 1920]

On the same synthetic but natural-looking frames (gradients, soft noise, flat shapes, text; nothing is
downloaded) it times the library's `WatermarkEncoder().encode(bgr, 'dwtDctSvd')` and our `watermark_frame`
(mode 'library': the same format, and 'both': plus our rescale-robust mark), then the two decoders, and checks
that the library's own decoder reads every bit of our output.
"""
from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy loads: one core for both sides

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imwatermark import WatermarkDecoder, WatermarkEncoder  # noqa: E402

from rights.watermark import PAYLOAD_BITS, content_id_new, payload_bits, watermark_frame, watermark_read  # noqa: E402

cv2.setNumThreads(1)


def natural_frame(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    tint = rng.uniform(-40, 40, 3)
    base = np.stack([x / width * 160 + 40, y / height * 140 + 50, (x + y) / (width + height) * 120 + 70], -1) + tint
    base += 25 * np.sin(x / rng.uniform(20, 60) + seed)[..., None] * np.cos(y / rng.uniform(30, 80))[..., None]
    base += cv2.GaussianBlur(rng.normal(0, 12, (height, width, 3)).astype(np.float32), (0, 0), 1.5)
    frame = np.clip(base, 0, 255).astype(np.uint8)
    for _ in range(6):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            cv2.circle(frame, center, int(rng.integers(height // 20, height // 4)), color, -1, cv2.LINE_AA)
        else:
            size = (int(rng.integers(width // 20, width // 4)), int(rng.integers(height // 20, height // 4)))
            cv2.rectangle(frame, center, (center[0] + size[0], center[1] + size[1]), color, -1)
    cv2.putText(frame, f"shot {seed}", (width // 10, height * 9 // 10), cv2.FONT_HERSHEY_SIMPLEX, height / 360,
                (245, 245, 245), max(1, height // 240), cv2.LINE_AA)
    return frame


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, {platform.python_implementation()} "
          f"{platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}; timed on 1 thread")
    frames = [natural_frame(args.height, args.width, seed) for seed in range(args.frames)]
    content_id = content_id_new()
    bits = payload_bits(content_id)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits)
    decoder = WatermarkDecoder("bits", PAYLOAD_BITS)

    times = {"library embed": [], "ours embed (library mode)": [], "ours embed (both marks)": [],
             "library decode": [], "ours decode (both marks)": []}
    library_reads_ours = {"library": 0, "both": 0}
    ours_reads_library = psnr_ours = psnr_library = 0.0
    watermark_frame(frames[0], content_id)  # warm up imports and caches
    for frame in frames:
        elapsed, theirs = timed(lambda: encoder.encode(frame, "dwtDctSvd"))
        times["library embed"].append(elapsed)
        for mode, label in (("library", "ours embed (library mode)"), ("both", "ours embed (both marks)")):
            elapsed, ours = timed(lambda: watermark_frame(frame, content_id, mode=mode))
            times[label].append(elapsed)
            elapsed, read = timed(lambda: decoder.decode(ours, "dwtDctSvd"))
            if mode == "both":
                times["library decode"].append(elapsed)
                psnr_ours += cv2.PSNR(frame, ours) / len(frames)
                elapsed, _found = timed(lambda: watermark_read(ours))
                times["ours decode (both marks)"].append(elapsed)
            library_reads_ours[mode] += [int(b) for b in read] == bits
        ours_reads_library += (watermark_read(theirs)[0] == content_id) / len(frames)
        psnr_library += cv2.PSNR(frame, theirs) / len(frames)

    print(f"\n{len(frames)} frames {args.width}x{args.height}, median per frame:")
    base = statistics.median(times["library embed"])
    for label, values in times.items():
        median = statistics.median(values)
        reference = base if "embed" in label else statistics.median(times["library decode"])
        print(f"  {label:28s} {median * 1000:8.1f} ms  {1 / median:7.2f} frames/s  x{reference / median:5.1f}")
    print(f"\nspeedup, ours (library mode) over the library's embed: "
          f"x{base / statistics.median(times['ours embed (library mode)']):.1f}; "
          f"both marks: x{base / statistics.median(times['ours embed (both marks)']):.1f}")
    for mode, count in library_reads_ours.items():
        print(f"library decoder reads all {PAYLOAD_BITS} bits of our '{mode}' output: {count}/{len(frames)} frames "
              f"({count / len(frames):.0%})")
    print(f"our decoder reads the library's output: {ours_reads_library:.0%} of frames")
    print(f"mean PSNR: ours (both marks) {psnr_ours:.2f} dB, library {psnr_library:.2f} dB")


if __name__ == "__main__":
    main()
