"""Invisible watermarks: a content id hidden in every frame, in the `invisible-watermark` dwtDctSvd format, and
a forensic mark naming the share link a copy was made for.

Two content marks, in two chroma planes that do not disturb each other:

- `library`: the `invisible-watermark` (imwatermark 0.2) `dwtDctSvd` format at the frame's own resolution, in
  the U plane, so the library's own decoder, `WatermarkDecoder('bits', 64).decode(bgr, 'dwtDctSvd')`, reads
  our 64 payload bits. It survives mild H.264 (CRF 18-23) and JPEG, but not a rescale (its 8x8-pixel blocks
  no longer line up) and not always CRF 28 (its fixed row-major layout ties each bit to a few image columns).
- `robust`: our own variant in the V plane (which the library never reads): made on the frame resized to a
  fixed working size (short side 360 lines) and added back as the upscaled residual, with twice the step, a
  hashed bit layout and dithered lattices. A suspect is read at the working size of its own shape, so a
  downscaled copy (say 640 px wide, re-encoded at CRF 28) still decodes. The library decoder cannot read it.

`both` (the default) embeds the two; `watermark_read` and `watermark_detect` try each mark and the two pooled,
and accept a read only when the payload's CRC checks, so a damaged read yields None rather than another id.

A third mark, `forensic` (watermark_forensic_video, forensic_detect), goes on top of a protected video when a
copy is handed out: the same 64-bit payload carrying a share link's id (a content_id_new id), in the LUMA, so
the two content marks read exactly as before (the plane path changes only Y'; the BGR path adds one change to
B, G and R, which leaves OpenCV's U = .49(B - Y) and V = .88(R - Y) where they were). It is the robust mark's
method on another plane and key: a working size of short side 180 lines (blocks of 32x32 pixels at 720p, which
ride through a downscale to 480 px and CRF 28-30), a step of 40 (PSNR of Y about 46 dB), and its own layout
seed, so that a reader keyed for one mark sees the other's blocks as noise. The reader takes Y' straight from
the planes of a plain yuv420p file, as it was written (see _luma). Marking a copy costs it one more H.264
generation (CRF 18), which takes a little of the content marks' margin and none of what survives a re-encode.

How the format works (imwatermark/dwtDctSvd.py): U plane -> one-level Haar DWT -> approximation band cut in
4x4 blocks, in row-major order; block n carries payload bit n % 64 in its largest singular value s0 (of the
block's DCT, which is the block's own, as the DCT is orthonormal), quantised to 1/4 (bit 0) or 3/4 (bit 1) of a
step of 36; the reader takes bit = (s0 mod 36) > 18 per block and a majority per bit. We change only s0, a
rank-one update `delta * u0 v0^T` of the block, so no DCT is needed; the top singular triplet of all blocks
comes from a few vectorised power iterations on B^T B (exact SVD for the rare blocks where convergence is not
proven). The change of the approximation band is a 2x2-constant change of U, applied to B and G with Y and V
held fixed, instead of round-tripping the whole frame through 8-bit YUV as the library does.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import subprocess
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from config.media_limits import MediaFailure, media_process, media_run

# --- content id and payload ---------------------------------------------------------------------------

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_CHARS = 8  # 40 bits
ID_BITS = 5 * ID_CHARS
CRC_BITS = 24
PAYLOAD_BITS = ID_BITS + CRC_BITS  # 64: the length the library decoder is asked for
# CRC-24 FlexRay polynomial: on 64-bit codewords (40 data + 24 check bits) its Hamming distance is 8, so every
# error of up to 7 bits is detected (checked by exhaustive search; OpenPGP's CRC-24 only reaches 6 here).
CRC_POLY = 0x5D6DCB
CRC_INIT = 0xFEDCBA
# XORed onto the payload so that constant reads (all 0 or all 1, as flat or unmarked frames give) are not
# valid codewords; it is a fixed part of the format.
PAYLOAD_MASK = 0xA5C3_96E1_5B2D_7F08

_DECODE_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})


class WatermarkError(MediaFailure):
    """A file could not be read or written for watermarking; the message says why."""


def content_id_new() -> str:
    """A fresh random content id: 8 Crockford base32 characters (40 bits, no I, L, O or U)."""
    value = secrets.randbits(ID_BITS)
    return "".join(CROCKFORD[(value >> (5 * (ID_CHARS - 1 - i))) & 31] for i in range(ID_CHARS))


def _id_value(content_id: str) -> int:
    text = content_id.strip().upper().replace("-", "").translate(_DECODE_ALIASES)
    if len(text) != ID_CHARS or any(ch not in CROCKFORD for ch in text):
        raise ValueError(f"not a content id: {content_id!r}")
    value = 0
    for ch in text:
        value = value << 5 | CROCKFORD.index(ch)
    return value


def _crc24(value: int) -> int:
    crc = CRC_INIT
    for i in range(ID_BITS - 1, -1, -1):
        top = ((crc >> 23) & 1) ^ ((value >> i) & 1)
        crc = (crc << 1) & 0xFFFFFF
        if top:
            crc ^= CRC_POLY
    return crc


def payload_bits(content_id: str) -> list[int]:
    """The 64 watermark bits for `content_id`: 40 id bits and a CRC-24 of them, XORed with a fixed mask."""
    value = _id_value(content_id)
    word = ((value << CRC_BITS) | _crc24(value)) ^ PAYLOAD_MASK
    return [(word >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)]


def payload_decode(bits) -> str | None:
    """The content id the 64 bits carry, or None when the CRC does not check (a damaged or unmarked read).

    Detection only, no correction: any error of up to 7 bits is always caught; a random 64-bit word (an unmarked
    frame, or a read damaged beyond that) is accepted with probability 2**-24 (about 6e-8) per attempt.
    """
    bits = [int(b) for b in bits]
    if len(bits) != PAYLOAD_BITS:
        return None
    word = 0
    for b in bits:
        word = word << 1 | (b & 1)
    word ^= PAYLOAD_MASK
    value, crc = word >> CRC_BITS, word & 0xFFFFFF
    if _crc24(value) != crc:
        return None
    return "".join(CROCKFORD[(value >> (5 * (ID_CHARS - 1 - i))) & 31] for i in range(ID_CHARS))


# --- the embedding ------------------------------------------------------------------------------------

LIBRARY_SCALE = 36.0  # imwatermark's default scales=[0, 36, 0]: U plane only, step 36
ROBUST_SCALE = 72.0  # our own mark: twice the step, for survival through rescale + H.264 (PSNR ~42.8 dB alone)
WORK_SHORT_SIDE = 360  # robust mark: working size, short side in lines
ROBUST_SEED = 0x5BD1E995  # robust mark: key of its block layout (_keyed_layout)
MODES = ("library", "robust", "both")
_POWER_STEPS = 8
_GAP = 0.5  # power iteration is trusted where s1/s0 < _GAP is proven; exact SVD elsewhere

# With Y and the other chroma plane held fixed, a change dU (dV) of OpenCV's YUV is this change of B, G, R.
# From OpenCV's BGR2YUV: Y = .299R + .587G + .114B, U = .492111(B - Y) + 128, V = .877283(R - Y) + 128.
_U_TO_BGR = np.array([1 / 0.492111, -0.114 / 0.587 / 0.492111, 0.0], dtype=np.float32)
_V_TO_BGR = np.array([0.0, -0.299 / 0.587 / 0.877283, 1 / 0.877283], dtype=np.float32)
_U, _V = 1, 2  # channels of cv2.COLOR_BGR2YUV


MIN_FRAME_SIDE = 16  # pixels: a smaller frame cannot carry the watermark
MARK_THREADS = 2  # threads marking a video's frames (at most the machine's cores)
MARK_WINDOW = 6  # frames decoded ahead of the encoder at most


def _check_frame(bgr: np.ndarray) -> None:
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError("expected an HxWx3 uint8 BGR frame")
    if bgr.shape[0] < MIN_FRAME_SIDE or bgr.shape[1] < MIN_FRAME_SIDE:
        raise ValueError("frame too small to carry a watermark")


def _blocks(plane: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The library's 4x4 blocks of the Haar approximation band of `plane`, as a (4, 4, N) stack (row-major
    block order, as the library counts them), and the block grid (rows, cols)."""
    rows, cols = plane.shape[0] // 8, plane.shape[1] // 8  # 4x4 blocks of the half-size band
    p = plane[:rows * 8, :cols * 8].astype(np.float32)
    # pywt.dwt2(.., 'haar')[0] is twice the 2x2 mean; an integer-factor INTER_AREA resize is that exact mean.
    ca = cv2.resize(p, (cols * 4, rows * 4), interpolation=cv2.INTER_AREA)
    ca *= 2
    stack = ca.reshape(rows, 4, cols, 4).transpose(1, 3, 0, 2).reshape(4, 4, rows * cols)
    return stack, (rows, cols)


def _keyed_layout(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For our own marks: the payload bit and the quantizer dither (0..1 of a step) of each block, from a hash
    of the block's position and the mark's `seed`. Spreading a bit's blocks over the whole frame, and shifting
    every block's lattice, turns what a codec leaves of a flat area into unbiased noise instead of the same
    wrong vote from every block of that area (which is what sinks the library's fixed row-major layout under
    strong compression). Two seeds give unrelated layouts, so a reader keyed for one mark sees the other as
    noise."""
    r, c = np.meshgrid(np.arange(rows, dtype=np.uint32), np.arange(cols, dtype=np.uint32), indexing="ij")
    h = (r.ravel() * np.uint32(0x9E3779B1)) ^ (c.ravel() * np.uint32(0x85EBCA77)) ^ np.uint32(seed)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return (h % PAYLOAD_BITS).astype(np.intp), ((h >> np.uint32(8)) & np.uint32(0xFFFF)).astype(np.float32) / 65536


def _layout(rows: int, cols: int, seed: int | None) -> tuple[np.ndarray, np.ndarray | float]:
    """Payload bit and dither (in steps) of each block: the library's row-major layout with no dither when
    `seed` is None, else the keyed one."""
    if seed is None:
        return np.arange(rows * cols) % PAYLOAD_BITS, 0.0
    return _keyed_layout(rows, cols, seed)


def _top_singular(stack: np.ndarray, *, vectors: bool):
    """s0 (and u0, v0 when asked) of every 4x4 block in a (4, 4, N) stack."""
    m = np.einsum("kin,kjn->ijn", stack, stack)  # B^T B per block
    v = np.full((4, stack.shape[2]), 0.5, dtype=np.float32)
    for _ in range(_POWER_STEPS):
        v = np.einsum("ijn,jn->in", m, v)
        v /= np.maximum(np.sqrt(np.einsum("in,in->n", v, v)), 1e-30)
    rayleigh = np.einsum("in,ijn,jn->n", v, m, v)
    s0 = np.sqrt(np.maximum(rayleigh, 0))
    # trace(B^T B) - rayleigh >= s1^2: where it is small, s1/s0 is small and eight steps have converged.
    rest = np.einsum("iin->n", m) - rayleigh
    slow = np.flatnonzero(rest > (_GAP * _GAP) * rayleigh)
    u = None
    if vectors:
        u = np.einsum("kin,in->kn", stack, v) / np.maximum(s0, 1e-30)
    if slow.size:
        exact = stack[:, :, slow].transpose(2, 0, 1).astype(np.float64)
        if vectors:
            us, ss, vts = np.linalg.svd(exact)
            u[:, slow], v[:, slow] = us[:, :, 0].T, vts[:, 0, :].T
            s0[slow] = ss[:, 0]
        else:
            s0[slow] = np.linalg.svd(exact, compute_uv=False)[:, 0]
    return (s0, u, v) if vectors else s0


def _plane_delta(plane: np.ndarray, bits: np.ndarray, scale: float, *, seed: int | None) -> np.ndarray:
    """The change of `plane` (float32, same shape) that makes the reader see `bits` in it: in the library's
    layout (`seed` None), or in the keyed one of `seed`, with hashed bit positions and dithered lattices."""
    stack, (rows, cols) = _blocks(plane)
    d_ca = _band_change(stack, rows, cols, bits, scale, seed=seed)
    # Inverse Haar with the detail bands unchanged: each approximation coefficient spreads as half of its
    # change over its 2x2 pixels.
    out = np.zeros(plane.shape[:2], dtype=np.float32)
    out[:rows * 8, :cols * 8] = cv2.resize(d_ca * 0.5, (cols * 8, rows * 8), interpolation=cv2.INTER_NEAREST)
    return out


def _band_change(stack: np.ndarray, rows: int, cols: int, bits: np.ndarray, scale: float, *,
                 seed: int | None) -> np.ndarray:
    """The change of the Haar approximation band (rows * 4 x cols * 4, float32) whose 4x4 blocks are `stack`
    that makes the reader see `bits` in it, in the layout of `seed` (see _layout)."""
    s0, u, v = _top_singular(stack, vectors=True)
    index, dither = _layout(rows, cols, seed)
    dither = dither * scale
    wanted = bits[index].astype(np.float32)
    # The library moves s0 up to its period's point ((floor(s0/step) + 1/4 + bit/2) * step, a move of -9..+27
    # at step 36); its reader only looks at s0 mod step, so we move to the nearest point of the wanted lattice
    # instead (-18..+18): the same margins for 43% less energy (about 2.4 dB PSNR).
    target = dither + (0.25 + 0.5 * wanted) * scale
    delta = np.mod(target - s0 + scale / 2, scale) - scale / 2
    delta[s0 + delta < scale] += scale  # keep s0 positive (and the largest) on near-black blocks
    d_stack = (u[:, None, :] * v[None, :, :]) * delta  # rank-one change of each block
    return d_stack.reshape(4, 4, rows, cols).transpose(2, 0, 3, 1).reshape(rows * 4, cols * 4)


# A video whose frames are untagged (BT.601) limited-range yuv420p, our compose's output, is marked in its own
# chroma planes: no conversion to BGR and back, and a quarter of the pixels. Per unit of Cb (Cr), OpenCV's
# U (V) of the decoded BGR frame, which both readers look at, moves _CB_TO_U (_CR_TO_V): 0.492111/0.495730
# and 0.877283/0.626560, from BT.601's Cb = 0.4957 (B - Y) and Cr = 0.6266 (R - Y) at 224/255 of full range.
_CB_TO_U = 0.492111 / (224 / 255 / 1.772)
_CR_TO_V = 0.877283 / (224 / 255 / 1.402)


def watermark_chroma(cb: np.ndarray, cr: np.ndarray, content_id: str, height: int, width: int, *,
                     mode: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """The Cb and Cr planes (uint8, height/2 x width/2) of a BT.601 limited-range yuv420p frame with
    `content_id` embedded as watermark_frame embeds it in the decoded BGR frame: the library's mark in U,
    whose Haar approximation band is the Cb plane (twice OpenCV's U at each chroma sample), and ours in V
    at the working size."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    bits = _bits_array(content_id)
    if mode in ("library", "both"):
        rows, cols = height // 8, width // 8
        band = cb[:rows * 4, :cols * 4].astype(np.float32)
        band -= 128
        band *= 2 * _CB_TO_U
        band += 256  # twice U, as the reader's band of the decoded frame
        stack = band.reshape(rows, 4, cols, 4).transpose(1, 3, 0, 2).reshape(4, 4, rows * cols)
        d_band = _band_change(stack, rows, cols, bits, LIBRARY_SCALE, seed=None)
        change = np.zeros(cb.shape, dtype=np.float32)
        change[:rows * 4, :cols * 4] = d_band * (0.5 / _CB_TO_U)  # each of its 2x2 pixels moves half the change
        cb = cv2.add(cb, change, dtype=cv2.CV_8U)
    if mode in ("robust", "both"):
        v = cr.astype(np.float32)
        v -= 128
        v *= _CR_TO_V
        v += 128
        v = _to_work(v, _work_size(height, width))
        d_v = _work_delta(v, bits, ROBUST_SCALE, ROBUST_SEED, cr.shape)
        cr = cv2.add(cr, d_v * (1 / _CR_TO_V), dtype=cv2.CV_8U)
    return cb, cr


def _work_size(height: int, width: int, short_side: int = WORK_SHORT_SIDE) -> tuple[int, int]:
    """The working size of a (height x width) frame: its short side brought down to `short_side` lines, so
    that a mark's blocks cover the same share of the picture at any resolution (a rescaled copy is read at the
    working size of its own shape)."""
    short = min(height, width)
    if short <= short_side:
        return height, width
    ratio = short_side / short
    return max(16, round(height * ratio)), max(16, round(width * ratio))


def _to_work(image: np.ndarray, work: tuple[int, int]) -> np.ndarray:
    """`image` (a plane or a BGR frame) resized to `work` (rows, cols): area-averaged when it shrinks, as
    readers and writers must agree on what a working-size pixel is."""
    if image.shape[:2] == work:
        return image
    shrink = work[0] < image.shape[0]
    return cv2.resize(image, (work[1], work[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _work_delta(plane: np.ndarray, bits: np.ndarray, scale: float, seed: int, shape: tuple[int, int]) -> np.ndarray:
    """The keyed mark's change of a working-size `plane`, brought to `shape` (the plane it is added to) as a
    smooth upscaled residual, so that only the mark, not a resampled picture, is added to the full frame."""
    delta = _plane_delta(plane, bits, scale, seed=seed)
    if delta.shape != tuple(shape):
        delta = cv2.resize(delta, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return delta


def _bits_array(content_id: str) -> np.ndarray:
    return np.array(payload_bits(content_id), dtype=np.uint8)


def watermark_frame(bgr: np.ndarray, content_id: str, *, mode: str = "both") -> np.ndarray:
    """`bgr` (HxWx3 uint8) with `content_id` embedded; `mode` is 'library', 'robust' or 'both' (see module doc)."""
    _check_frame(bgr)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    bits = _bits_array(content_id)
    height, width = bgr.shape[:2]
    d_u = d_v = None
    if mode in ("library", "both"):
        d_u = _plane_delta(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[:, :, _U], bits, LIBRARY_SCALE, seed=None)
    if mode in ("robust", "both"):
        small = _to_work(bgr, _work_size(height, width))
        d_v = _work_delta(cv2.cvtColor(small, cv2.COLOR_BGR2YUV)[:, :, _V], bits, ROBUST_SCALE, ROBUST_SEED,
                          (height, width))
    b, g, r = cv2.split(bgr)
    # cv2.add rounds to nearest and saturates into uint8 in one pass.
    if d_u is not None:
        b = cv2.add(b, d_u * _U_TO_BGR[0], dtype=cv2.CV_8U)
    g_change = (d_u * _U_TO_BGR[1] if d_u is not None else 0) + (d_v * _V_TO_BGR[1] if d_v is not None else 0)
    g = cv2.add(g, g_change, dtype=cv2.CV_8U)
    if d_v is not None:
        r = cv2.add(r, d_v * _V_TO_BGR[2], dtype=cv2.CV_8U)
    return cv2.merge([b, g, r])


# --- reading ------------------------------------------------------------------------------------------


def _plane_votes(plane: np.ndarray, scale: float, *, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per payload bit: the (soft) count of blocks voting 1, and the count of blocks read.

    The library's reader votes hard, 1 when s0 mod scale > scale/2; we weigh each block by how close s0 lies to
    the 1 lattice (3/4 of a step) or the 0 lattice (1/4): (1 + cos(2 pi (r - 3/4))) / 2, r = s0/scale mod 1,
    which agrees with the hard vote and lets a clean block count more than one the codec has half moved."""
    stack, (rows, cols) = _blocks(plane)
    s0 = _top_singular(stack, vectors=False)
    index, dither = _layout(rows, cols, seed)
    residue = np.mod(s0 / scale - dither, 1.0)
    ones = (1 + np.cos(2 * np.pi * (residue - 0.75))) * 0.5
    return (np.bincount(index, weights=ones, minlength=PAYLOAD_BITS),
            np.bincount(index, minlength=PAYLOAD_BITS).astype(np.float64))


def _frame_votes(bgr: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Block votes of one frame for each mark: 'library' (U, own size) and 'robust' (V, working size)."""
    _check_frame(bgr)
    height, width = bgr.shape[:2]
    votes = {"library": _plane_votes(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[:, :, _U], LIBRARY_SCALE, seed=None)}
    small = _to_work(bgr, _work_size(height, width))
    votes["robust"] = _plane_votes(cv2.cvtColor(small, cv2.COLOR_BGR2YUV)[:, :, _V], ROBUST_SCALE, seed=ROBUST_SEED)
    return votes


def _decide(fractions: dict[str, np.ndarray]) -> tuple[str | None, float, str]:
    """Try each mark's bits, then both pooled; the first whose CRC checks wins. Confidence is the mean bit
    agreement |2f - 1| (f: fraction of blocks voting 1), 0 for an unmarked frame and 1 for a clean read.
    At most three CRC checks per call: a random read is accepted with probability under 3 * 2**-24."""
    candidates = dict(fractions)
    candidates["pooled"] = (fractions["library"] + fractions["robust"]) / 2
    best = (None, 0.0, "none")
    for name, fraction in candidates.items():
        agreement = float(np.mean(np.abs(2 * fraction - 1)))
        found = payload_decode((fraction > 0.5).astype(int))
        if found is not None:
            if best[0] is None or agreement > best[1]:
                best = (found, agreement, name)
        elif best[0] is None and agreement > best[1]:
            best = (None, agreement, name)
    return best


def watermark_read(bgr: np.ndarray) -> tuple[str | None, float]:
    """The content id in one frame (either mark) and the bit agreement of the read, or (None, agreement)."""
    votes = _frame_votes(bgr)
    content_id, confidence, _mark = _decide({name: ones / np.maximum(seen, 1) for name, (ones, seen) in votes.items()})
    return content_id, round(confidence, 4)


# --- the forensic mark ------------------------------------------------------------------------------

FORENSIC_SCALE = 40.0  # forensic mark: quantizer step of s0 (Y PSNR ~46.4 dB alone)
FORENSIC_SHORT_SIDE = 180  # forensic mark: working size, short side in lines
FORENSIC_SEED = 0x27D4EB2F  # forensic mark: key of its block layout, unrelated to ROBUST_SEED's
# Per level of limited-range Y' (BT.601, 219 levels from black to white), OpenCV's Y of the decoded frame moves
# 255/219 levels.
_LUMA_TO_Y = 255 / 219
# Offsets of the whole luma (levels of OpenCV's Y) the forensic reader takes back before reading, keeping the one
# whose bits agree best. A conversion through RGB moves all of luma by a level or two (ffmpeg's yuv420p -> BGR by
# about -1.3, its BGR -> yuv420p by about -0.5), and s0 of a smooth block (8 times its mean Y) by 8 times that: a
# fifth of FORENSIC_SCALE per level, which loses the read. An offset of FORENSIC_SCALE / 8 levels (5) brings
# every smooth block back onto its lattice, and half of that inverts every bit (|2f - 1| cannot tell the two
# apart), so one period is searched, a twentieth of it apart (at most 2.5% of a step off), and the best offset's
# bits and their inverse get a CRC check: a false accept stays at 2 * 2**-24 a call.
_FORENSIC_OFFSETS = tuple(float(offset) for offset in (np.arange(20) / 20 - 0.5) * (FORENSIC_SCALE / 8))


def _luma(frame: np.ndarray) -> np.ndarray:
    """OpenCV's Y (float32) of a BGR frame (BGR2GRAY: the weights of BGR2YUV's Y), or of a Y' plane (2-D uint8,
    BT.601 limited range) as the decoded frame has it: (Y' - 16) * 255/219. The reader takes it from the plane
    itself where it can: ffmpeg's conversion to BGR offsets luma by -1.3 levels on average (which
    _FORENSIC_OFFSETS takes back) but by 0.4 levels more or less from pixel to pixel (which nothing does)."""
    if frame.ndim == 2:
        y = frame.astype(np.float32)
        y -= 16
        y *= _LUMA_TO_Y
        return y
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _forensic_delta(y: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The forensic mark's change of a Y plane (float32, OpenCV's Y scale), at the plane's own size."""
    work = _to_work(y, _work_size(*y.shape, FORENSIC_SHORT_SIDE))
    return _work_delta(work, bits, FORENSIC_SCALE, FORENSIC_SEED, y.shape)


def _forensic_luma_bits(y: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The Y' plane (uint8, limited range) of a BT.601 yuv420p frame with `bits` as the forensic mark; Cb and Cr
    need no change."""
    return cv2.add(y, _forensic_delta(_luma(y), bits) * (1 / _LUMA_TO_Y), dtype=cv2.CV_8U)


def _forensic_frame_bits(bgr: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """`bgr` with `bits` as the forensic mark. The same change is added to B, G and R, which moves OpenCV's Y
    by that change and its U and V (B - Y, R - Y) not at all, so the content marks read as before."""
    d_y = _forensic_delta(_luma(bgr), bits)
    return cv2.add(bgr, cv2.merge([d_y, d_y, d_y]), dtype=cv2.CV_8U)


def forensic_frame(bgr: np.ndarray, mark_id: str) -> np.ndarray:
    """`bgr` (HxWx3 uint8) with the forensic mark of `mark_id` in its luma (see module doc)."""
    _check_frame(bgr)
    return _forensic_frame_bits(bgr, _bits_array(mark_id))


def _forensic_votes(frame: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Block votes of one frame (BGR, or the Y' plane of a plain yuv420p frame; see _luma) for the forensic
    mark, read in its Y at the forensic working size of the frame's own shape, once for each of
    _FORENSIC_OFFSETS taken back."""
    if frame.ndim == 3:
        _check_frame(frame)
    y = _luma(frame)
    y = _to_work(y, _work_size(*y.shape, FORENSIC_SHORT_SIDE))
    return {offset: _plane_votes(y - offset, FORENSIC_SCALE, seed=FORENSIC_SEED) for offset in _FORENSIC_OFFSETS}


def _forensic_decide(fractions: dict[float, np.ndarray]) -> tuple[str | None, float, float]:
    """The mark id (None unless the CRC checks), bit agreement and luma offset of the offset whose bits agree
    best (mean |2f - 1|: about 0.1 to 0.2 for an unmarked picture, 0.8 and more for a marked one). Its bits are
    tried as read and inverted, the inverse being what the offset half a period away reads. The inverse of a valid
    word is never valid (the CRC's linear part maps forty 1 bits to 0x83CF34, not to twenty-four), so a clean
    read passes at most one of the two checks and cannot name another id."""
    agreement = {offset: float(np.mean(np.abs(2 * fraction - 1))) for offset, fraction in fractions.items()}
    offset = max(agreement, key=agreement.get)
    bits = (fractions[offset] > 0.5).astype(int)
    mark_id = payload_decode(bits)
    found_at = offset
    if mark_id is None:
        mark_id = payload_decode(1 - bits)
        if mark_id is not None:
            half = FORENSIC_SCALE / 16
            found_at = offset - half if offset >= 0 else offset + half
    return mark_id, agreement[offset], found_at


def forensic_read(bgr: np.ndarray) -> tuple[str | None, float]:
    """The forensic mark id in one frame and the bit agreement of the read, or (None, agreement)."""
    votes = _forensic_votes(bgr)
    mark_id, agreement, _offset = _forensic_decide({offset: ones / np.maximum(seen, 1)
                                                    for offset, (ones, seen) in votes.items()})
    return mark_id, round(agreement, 4)


# --- files --------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _read_image(path: Path) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise WatermarkError(f"cannot read image {path.name}")
    return frame


def watermark_image(src, dst, content_id: str, *, mode: str = "both") -> dict:
    """Mark an image file; `dst` is written as PNG (lossless, so both marks are kept exactly)."""
    src, dst = Path(src), Path(dst)
    frame = _read_image(src)
    marked = watermark_frame(frame, content_id, mode=mode)
    ok, data = cv2.imencode(".png", marked)
    if not ok:
        raise WatermarkError(f"cannot encode {dst.name} as PNG")
    dst.write_bytes(data.tobytes())
    return {"content_id": content_id, "method": "dwtDctSvd", "mode": mode, "payload_bits": PAYLOAD_BITS,
            "frames": 1, "width": frame.shape[1], "height": frame.shape[0]}


def _ffmpeg() -> str:
    from config.media import ffmpeg_exe

    return ffmpeg_exe()


def _video_info(path: Path) -> dict:
    from config.media import MediaError, probe

    try:
        return probe(path)
    except MediaError as exc:
        raise WatermarkError(str(exc)) from None


def _rate_arg(fps: float | None) -> str:
    """The frame rate as ffmpeg wants it; NTSC rates (29.97 as probed) become their exact fractions."""
    if not fps or fps <= 0:
        return "25"
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.01:
            return f"{base * 1000}/1001"
    return f"{fps:g}"


_PIXEL_FORMAT = re.compile(r"Stream #\d+:\d+\S*: Video: .*?, (\w+)(?:\(([^)]*)\))?, \d+x\d+")
_PLAIN_TAGS = {"tv", "progressive", "bt470bg", "smpte170m", "unknown", "reserved"}


def _plain_yuv420(path: Path) -> bool:
    """Whether the video's frames are yuv420p with no colour tags but BT.601's (and limited range), so that its
    planes can be marked as they are (watermark_chroma)."""
    completed = media_run([_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)], timeout=60)
    match = _PIXEL_FORMAT.search(completed.stderr.decode("utf-8", "replace"))
    if match is None or match.group(1) != "yuv420p":
        return False
    tags = {tag.strip() for tag in re.split(r"[,/]", match.group(2) or "") if tag.strip()}
    return tags <= _PLAIN_TAGS


def _frames(path: Path, width: int, height: int, *, vf: str | None = None, limit: int | None = None,
            pix_fmt: str = "bgr24"):
    """Decoded frames of `path` as HxWx3 uint8 BGR arrays, in order (`pix_fmt="yuv420p"`: each frame's planes,
    Y then Cb then Cr, as one flat uint8 array)."""
    args = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0"]
    if vf:
        args += ["-vf", vf]
    if limit:
        args += ["-frames:v", str(limit)]
    # Frames of exactly the size the checked header declared (a stream whose coded size differs is
    # scaled inside ffmpeg), so this process never holds more than one frame of that size.
    args += ["-fps_mode", "passthrough", "-s", f"{width}x{height}", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    size = width * height * 3 if pix_fmt == "bgr24" else width * height * 3 // 2
    with tempfile.TemporaryFile() as errors:
        with media_process(args, stdout=subprocess.PIPE, stderr_file=errors, stdin=subprocess.DEVNULL) as process:
            try:
                while True:
                    data = process.stdout.read(size)
                    if len(data) < size:
                        break
                    frame = np.frombuffer(data, dtype=np.uint8)
                    yield frame.reshape(height, width, 3) if pix_fmt == "bgr24" else frame
            finally:
                process.stdout.close()
                code = process.wait()
        if code not in (0, None):
            errors.seek(0)
            tail = errors.read()[-600:].decode(errors="replace")
            raise WatermarkError(f"ffmpeg could not decode {path.name}: {tail}")


@contextlib.contextmanager
def _opencv_threads(count: int | None):
    """OpenCV's own thread pool set to `count` meanwhile (None: left alone). With frames marked on several
    threads already, OpenCV splitting each small operation again only spends CPU on handing work over."""
    if count is None:
        yield
        return
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _mark_bgr(frame: np.ndarray, content_id: str, *, mode: str) -> tuple[bytes, None]:
    return watermark_frame(frame, content_id, mode=mode).tobytes(), None


def _split_planes(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, Cb and Cr planes of one flat yuv420p frame, as views."""
    luma, chroma = width * height, (width // 2) * (height // 2)
    return (frame[:luma].reshape(height, width), frame[luma:luma + chroma].reshape(height // 2, width // 2),
            frame[luma + chroma:].reshape(height // 2, width // 2))


def _mark_planes(frame: np.ndarray, content_id: str, *, mode: str, width: int, height: int) -> tuple[bytes, None]:
    """One yuv420p frame (flat: Y, Cb, Cr) marked in its chroma planes; the luma is left as it is."""
    y, cb, cr = _split_planes(frame, width, height)
    cb, cr = watermark_chroma(cb, cr, content_id, height, width, mode=mode)
    return b"".join((y.tobytes(), cb.tobytes(), cr.tobytes())), None


def _forensic_bgr(frame: np.ndarray, bits: np.ndarray) -> tuple[bytes, float]:
    """One BGR frame with the forensic mark, and the sum of squares of its Y' change (for the PSNR)."""
    marked = _forensic_frame_bits(frame, bits)
    d_y = cv2.cvtColor(cv2.absdiff(marked, frame), cv2.COLOR_BGR2GRAY).astype(np.float32) * (1 / _LUMA_TO_Y)
    return marked.tobytes(), float(cv2.norm(d_y, cv2.NORM_L2SQR))


def _forensic_planes(frame: np.ndarray, bits: np.ndarray, *, width: int, height: int) -> tuple[bytes, float]:
    """One yuv420p frame with the forensic mark in its Y plane (Cb and Cr as they are), and the sum of squares
    of the Y' change."""
    y, cb, cr = _split_planes(frame, width, height)
    marked = _forensic_luma_bits(y, bits)
    return b"".join((marked.tobytes(), cb.tobytes(), cr.tobytes())), float(cv2.norm(marked, y, cv2.NORM_L2SQR))


def _mark_video(src, dst, mark_planes, mark_bgr, *, crf: int, vf: str | None = None) -> dict:
    """Decode `src`, mark every frame, encode H.264 yuv420p (+faststart) to `dst`, copying the audio and subtitle
    streams untouched (a composed video's soft subtitles stay in the file). The one encode loop of both the
    content mark and the forensic mark, which differ only in what they do to a frame.

    `mark_planes(frame, width=, height=)` marks a flat yuv420p frame, `mark_bgr(frame)` a BGR one; each returns
    the frame's bytes and the sum of squares of its luma change (None when not measured). `vf`: an ffmpeg
    filter applied to the decoded frames before they are marked (a share copy's visible line). Returns frames,
    width, height, crf, planes, seconds, fps_processed and squared (the summed luma change, or None)."""
    import time

    from config.media import VIDEO_PRESET

    src, dst = Path(src), Path(dst)
    info = _video_info(src)
    width, height = info["width"], info["height"]
    if width % 2 or height % 2:
        raise WatermarkError(f"{src.name} is {width}x{height}: H.264 yuv420p needs even sides")
    started = time.perf_counter()
    # Our own compose output (and any plain BT.601 yuv420p video) is marked in its own planes; anything else
    # through BGR, which ffmpeg converts with the stream's own colour tags.
    pix_fmt = "yuv420p" if _plain_yuv420(src) else "bgr24"
    mark = functools.partial(mark_planes, width=width, height=height) if pix_fmt == "yuv420p" else mark_bgr
    args = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}", "-framerate", _rate_arg(info["fps"]),
            "-i", "-", "-i", str(src), "-map", "0:v:0", "-map", "1:a?", "-map", "1:s?",
            "-c:v", "libx264", "-preset", VIDEO_PRESET, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-c:a", "copy", "-c:s", "copy", "-movflags", "+faststart", str(dst)]
    count, squared = 0, 0.0
    workers = max(1, min(MARK_THREADS, os.cpu_count() or 1))
    with tempfile.TemporaryFile() as errors, _opencv_threads(1 if workers > 1 else None), \
            ThreadPoolExecutor(workers, thread_name_prefix="mark") as pool:
        with media_process(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr_file=errors) as encoder:
            # Frames are marked on `workers` threads (OpenCV and NumPy release the GIL for most of the work)
            # and written in order; at most MARK_WINDOW frames are in flight, so memory stays bounded.
            pending: deque = deque()

            def write_oldest() -> None:
                nonlocal count, squared
                data, change = pending.popleft().result()
                encoder.stdin.write(data)
                count += 1
                squared = None if change is None or squared is None else squared + change

            try:
                for frame in _frames(src, width, height, pix_fmt=pix_fmt, vf=vf):
                    pending.append(pool.submit(mark, frame))
                    if len(pending) >= MARK_WINDOW:
                        write_oldest()
                while pending:
                    write_oldest()
            except BrokenPipeError:
                pass
            finally:
                try:
                    encoder.stdin.close()
                except BrokenPipeError:
                    pass
                code = encoder.wait()
        if code != 0:
            errors.seek(0)
            tail = errors.read()[-600:].decode(errors="replace")
            raise WatermarkError(f"ffmpeg could not encode {dst.name}: {tail}")
    if count == 0:
        raise WatermarkError(f"{src.name} has no frames")
    elapsed = time.perf_counter() - started
    return {"frames": count, "width": width, "height": height, "crf": crf, "planes": pix_fmt,
            "seconds": round(elapsed, 3), "fps_processed": round(count / elapsed, 2) if elapsed else None,
            "squared": squared}


def watermark_video(src, dst, content_id: str, *, crf: int = 18, mode: str = "both") -> dict:
    """Mark every frame of a video with the content id (see _mark_video for the decode and encode).
    Returns what was done, for the content record."""
    bits_check = payload_bits(content_id)  # fail early on a bad id
    summary = _mark_video(src, dst, functools.partial(_mark_planes, content_id=content_id, mode=mode),
                          functools.partial(_mark_bgr, content_id=content_id, mode=mode), crf=crf)
    del summary["squared"]
    return {"content_id": content_id, "method": "dwtDctSvd", "mode": mode, "payload_bits": len(bits_check),
            **summary}


def watermark_forensic_video(src, dst, mark_id: str, *, crf: int = 18, vf: str | None = None) -> dict:
    """Add the forensic mark of `mark_id` (a share link's id, from content_id_new) to every frame of an
    already protected video, leaving its content marks readable: only luma changes, so the chroma the content
    readers look at is the source's (up to one more H.264 generation at `crf`).

    Returns mark_id, frames, seconds, psnr (dB, of the Y plane of the marked frames against the decoded source
    frames, before encoding: the mark's own cost, not the codec's) and the encode's details. `vf` is drawn on
    the frames first (e.g. a visible "DRAFT" line, ffmpeg's drawtext), so the forensic mark covers it too."""
    bits = _bits_array(mark_id)  # fail early on a bad id
    summary = _mark_video(src, dst, functools.partial(_forensic_planes, bits=bits),
                          functools.partial(_forensic_bgr, bits=bits), crf=crf, vf=vf)
    squared = summary.pop("squared")
    samples = summary["frames"] * summary["width"] * summary["height"]
    psnr = round(float(10 * np.log10(255.0 ** 2 * samples / squared)), 2) if squared else None
    return {"mark_id": mark_id, "method": "dwtDctSvd-luma", "payload_bits": PAYLOAD_BITS, **summary,
            "psnr": psnr}


def _detect_frames(path: Path, max_frames: int, *, luma: bool = False):
    """The frames a detector reads, as BGR: an image's one, or up to `max_frames` spread evenly over a video (a
    copy cut short or with a replaced stretch still offers most of them). With `luma`, a plain yuv420p video's
    frames come as their Y' planes instead (2-D uint8), as the forensic mark was written (see _luma)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [_read_image(path)]
    info = _video_info(path)
    width, height = info["width"], info["height"]
    total = round((info.get("duration_s") or 0) * (info.get("fps") or 0))
    step = max(1, total // max(1, max_frames))
    vf = f"select='not(mod(n\\,{step}))'" if step > 1 else None
    if luma and _plain_yuv420(path):
        return (frame[:width * height].reshape(height, width)
                for frame in _frames(path, width, height, vf=vf, limit=max_frames, pix_fmt="yuv420p"))
    return _frames(path, width, height, vf=vf, limit=max_frames)


def _pooled_votes(frames, frame_votes) -> tuple[dict, dict, int]:
    """Block votes of `frames` summed per mark and per bit before any decision, as `frame_votes(frame)` gives
    them ({mark: (ones, seen)}): a bit too weak in every single frame is still read from their sum. Returns
    each mark's fraction of blocks voting 1, each mark's count of frames whose own majority voted 1, and the
    number of frames read."""
    totals: dict[str, list[np.ndarray]] = {}
    frame_ones: dict[str, np.ndarray] = {}
    read = 0
    for frame in frames:
        for name, (ones, seen) in frame_votes(frame).items():
            total_ones, total_seen = totals.setdefault(name, [np.zeros(PAYLOAD_BITS), np.zeros(PAYLOAD_BITS)])
            total_ones += ones
            total_seen += seen
            frame_ones.setdefault(name, np.zeros(PAYLOAD_BITS, dtype=int))
            frame_ones[name] += (ones / np.maximum(seen, 1) > 0.5)
        read += 1
    fractions = {name: ones / np.maximum(seen, 1) for name, (ones, seen) in totals.items()}
    return fractions, frame_ones, read


def watermark_detect(path, *, max_frames: int = 12) -> dict:
    """Read the content id of an image or video file. For a video, up to `max_frames` frames spread over it are
    read, their block votes pooled per bit (and per mark), and only then decoded.

    Returns content_id (None when no CRC checks), confidence (mean bit agreement of the accepted read, 0..1),
    frames_read, votes (per payload bit, how many of the frames read voted 1, in the mark that decided) and mark.
    """
    fractions, frame_ones, read = _pooled_votes(_detect_frames(Path(path), max_frames), _frame_votes)
    if not read:
        return {"content_id": None, "confidence": 0.0, "frames_read": 0, "votes": [], "mark": "none"}
    content_id, confidence, mark = _decide(fractions)
    votes = frame_ones["library" if mark in ("pooled", "none") else mark]
    if mark == "pooled":
        votes = (frame_ones["library"] + frame_ones["robust"]) // 2
    return {"content_id": content_id, "confidence": round(confidence, 4), "frames_read": read,
            "votes": [int(v) for v in votes], "mark": mark}


def forensic_detect(path, *, max_frames: int = 12) -> dict:
    """Read the forensic mark (the share link's id) of an image or video file, pooling the block votes of up to
    `max_frames` frames spread over it, as watermark_detect does, at the luma offset that reads best (see
    _FORENSIC_OFFSETS). A copy with no forensic mark (or a damaged one) reads None; two CRC checks on the
    pooled bits accept a wrong id with probability 2**-23.

    Returns mark_id (None when the CRC does not check), confidence (mean bit agreement |2f - 1| of the pooled
    read, 0..1), frames_read and luma_offset (the offset of the whole luma the read took back, in levels, modulo
    FORENSIC_SCALE / 8: about 0 for our own copies, a level or two for a copy that went through RGB)."""
    fractions, _frame_ones, read = _pooled_votes(_detect_frames(Path(path), max_frames, luma=True),
                                                 _forensic_votes)
    if not read:
        return {"mark_id": None, "confidence": 0.0, "frames_read": 0, "luma_offset": 0.0}
    mark_id, agreement, offset = _forensic_decide(fractions)
    return {"mark_id": mark_id, "confidence": round(agreement, 4), "frames_read": read,
            "luma_offset": round(offset, 2)}
