"""Fuzz ``visionrt.images.load_image(bytes)`` (catalogue E1, rules S7/S8, cases B1-B13).

Property checked on every input: ``load_image`` either returns a C-contiguous uint8 (H, W, 3)
array with 1 <= H, W and H*W within the decode limits, or raises a visionrt ``ImageError`` /
``InputValidationError``. Any other exception, a wrong array, a hang over ``--timeout`` seconds or
RSS over ``--rss-mb`` is a finding.

Engines:
    atheris  coverage-guided libFuzzer through atheris (``pip install atheris``; the default when
             importable). Pillow's Python plugins and visionrt.images are instrumented.
    mutate   a dependency-free random mutator over the same seed corpus (bit flips, interesting
             integers in headers, splices, truncation), for machines without atheris.

Usage:
    python benchmarks/fuzz_images.py --seconds 60                 # atheris, 60 s
    python benchmarks/fuzz_images.py --engine mutate --seconds 60
    python benchmarks/fuzz_images.py --replay crash-1234abcd      # re-run one finding

The seed corpus (CMYK/Adobe JPEG, 16-bit PNG/TIFF, palette+tRNS, LA/RGBA, EXIF 1-8, animated
GIF/WebP, multi-page TIFF, truncated files, bomb headers) is generated into ``--corpus``.
Findings are written to ``--artifacts`` as ``crash-<sha1>`` files. Exit status: 0 when no finding.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

# Decoding limits for the fuzzer: small enough that every accepted input decodes in milliseconds,
# which lets libFuzzer's hang detection mean something. The property checks them too.
FUZZ_MAX_PIXELS = 1 << 22
FUZZ_MAX_BYTES = 1 << 20


class PropertyViolation(AssertionError):
    """load_image returned something that is not a valid image array."""


def _limits():
    from visionrt.images import DecodeLimits

    return DecodeLimits(max_pixels=FUZZ_MAX_PIXELS, max_bytes=FUZZ_MAX_BYTES)


def check_one(data: bytes, limits=None) -> str:
    """Run the property on one input; return the outcome name, raise on a finding."""
    from visionrt.errors import ImageError, InputValidationError
    from visionrt.images import load_image, resize_crop

    limits = limits or _limits()
    try:
        out = load_image(data, limits=limits)
        _check_array(out, limits, "load_image")
        if data[:2] == b"\xff\xd8":  # the runtime's JPEG draft path (reduced-size decode)
            _check_array(load_image(data, limits=limits, draft_size=(32, 32)), limits, "draft")
    except (ImageError, InputValidationError) as exc:
        return type(exc).__name__
    resized = resize_crop(out, _spec())  # the shared eval transform must accept every decode
    if resized.shape != (32, 32, 3) or resized.dtype != np.uint8:
        raise PropertyViolation(f"resize_crop returned {resized.dtype} {resized.shape}")
    return "decoded"


def _check_array(out, limits, where: str) -> None:
    ok = (
        isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3
        and out.shape[2] == 3 and out.shape[0] >= 1 and out.shape[1] >= 1
        and out.shape[0] * out.shape[1] <= limits.max_pixels and out.flags.c_contiguous
    )
    if not ok:
        got = f"{type(out).__name__} {getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}"
        raise PropertyViolation(f"{where} returned {got}")


@functools.cache
def _spec():
    """The 32 px ModelSpec of the resize check (built after atheris instrumented visionrt)."""
    from visionrt.spec import ModelSpec

    return ModelSpec(arch="fuzz", labels=("a", "b"), input_size=(32, 32), crop_pct=0.875)


# --- seed corpus ---------------------------------------------------------------------------------
def _encode(image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_with_ihdr(width: int, height: int) -> bytes:
    from PIL import Image

    data = _encode(Image.new("L", (1, 1)), "PNG")
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    start = data.index(b"IHDR") - 4
    return (data[:start] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + data[start + 25:])


def seed_inputs() -> dict[str, bytes]:
    """Small files covering every decode path load_image has, valid and hostile."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    gray = rgb.convert("L")
    seeds: dict[str, bytes] = {
        "rgb.png": _encode(rgb, "PNG"),
        "rgb.jpg": _encode(rgb, "JPEG", quality=80),
        "progressive.jpg": _encode(rgb, "JPEG", progressive=True),
        "cmyk_adobe.jpg": _encode(rgb.convert("CMYK"), "JPEG"),
        "gray.jpg": _encode(gray, "JPEG"),
        "gray.png": _encode(gray, "PNG"),
        "bilevel.png": _encode(gray.convert("1"), "PNG"),
        "bilevel_g4.tif": _encode(gray.convert("1"), "TIFF", compression="group4"),
        "rgba.png": _encode(rgb.convert("RGBA"), "PNG"),
        "la.png": _encode(gray.convert("LA"), "PNG"),
        "rgba.webp": _encode(rgb.convert("RGBA"), "WEBP", lossless=True),
        "rgb.webp": _encode(rgb, "WEBP", quality=50),
        "rgb.bmp": _encode(rgb, "BMP"),
        "pal.bmp": _encode(rgb.convert("P"), "BMP"),
        "rgb.tif": _encode(rgb, "TIFF"),
        "lzw.tif": _encode(rgb, "TIFF", compression="tiff_lzw"),
        "deflate.tif": _encode(rgb, "TIFF", compression="tiff_adobe_deflate"),
        "cmyk.tif": _encode(rgb.convert("CMYK"), "TIFF"),
        "float.tif": _encode(gray.convert("F"), "TIFF"),
        "int32.tif": _encode(gray.convert("I"), "TIFF"),
        "gray16.png": _encode(Image.fromarray(
            rng.integers(0, 65536, (24, 32), dtype=np.uint16)), "PNG"),
        "gray16.tif": _encode(Image.fromarray(
            rng.integers(0, 65536, (24, 32), dtype=np.uint16)), "TIFF"),
    }
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 8, 16))
    seeds["palette_trns.png"] = _encode(pal, "PNG", transparency=0)
    seeds["palette_trns.gif"] = _encode(pal, "GIF", transparency=0)
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    seeds["anim.gif"] = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    seeds["anim.webp"] = _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    seeds["pages.tif"] = _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    for orientation in range(1, 9):
        seeds[f"exif{orientation}.jpg"] = _encode(rgb, "JPEG", exif=_exif(orientation))
    seeds["exif6.png"] = _encode(rgb, "PNG", exif=_exif(6))
    seeds["truncated.jpg"] = seeds["rgb.jpg"][: len(seeds["rgb.jpg"]) // 2]
    seeds["truncated.png"] = seeds["rgb.png"][: len(seeds["rgb.png"]) // 2]
    seeds["bomb.png"] = _png_with_ihdr(100_000, 100_000)
    seeds["wide.png"] = _png_with_ihdr(20_000, 2)
    seeds["html.jpg"] = b"<html><body>404 Not Found</body></html>"
    return seeds


def _exif(orientation: int):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def write_corpus(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in seed_inputs().items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


# --- engines -------------------------------------------------------------------------------------
def run_atheris(corpus: Path, artifacts: Path, seconds: int, timeout: int, rss_mb: int) -> None:
    import atheris

    limits = _limits()

    def test_one_input(data: bytes) -> None:
        check_one(data, limits)

    # libFuzzer checks getrusage()'s peak RSS, which Linux carries over from the parent across
    # fork + exec: started from a 5.8 GB pytest process, this process "used" 5.8 GB before its
    # first input and was reported out of memory. The limit is therefore on top of that start.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    args = [sys.argv[0], str(corpus), f"-max_total_time={seconds}", f"-timeout={timeout}",
            f"-rss_limit_mb={rss_mb + inherited_mb}", "-max_len=65536", f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1"]
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()  # exits the process: 0 when no finding


_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 100_000,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(data: bytes, pool: list[bytes], rnd: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(7)
        pos = rnd.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[pos] ^= 1 << rnd.randrange(8)
        elif op == 1 and buf:
            buf[pos] = rnd.choice((0, 0xFF, 0x7F, 0x80, rnd.randrange(256)))
        elif op == 2 and len(buf) > 4:
            value = rnd.choice(_INTERESTING)
            fmt = rnd.choice((">I", "<I", ">H", "<H"))
            width = struct.calcsize(fmt)
            pos = min(pos, len(buf) - width)
            buf[pos:pos + width] = struct.pack(fmt, value & ((1 << (8 * width)) - 1))
        elif op == 3:
            del buf[pos:pos + rnd.randint(1, 64)]
        elif op == 4:
            buf[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 32)))
        elif op == 5 and buf:
            buf = buf[: rnd.randrange(len(buf) + 1)]
        else:
            other = rnd.choice(pool)
            cut = rnd.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
    return bytes(buf[:FUZZ_MAX_BYTES])


class _Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _Hang()


def run_mutate(corpus: Path, artifacts: Path, seconds: int, timeout: int, seed: int) -> int:
    pool = [p.read_bytes() for p in sorted(corpus.iterdir()) if p.is_file()]
    rnd = random.Random(seed)
    outcomes: Counter[str] = Counter()
    findings = 0
    deadline = time.monotonic() + seconds
    signal.signal(signal.SIGALRM, _alarm)
    execs = 0
    while time.monotonic() < deadline:
        data = rnd.choice(pool) if execs < len(pool) else mutate(rnd.choice(pool), pool, rnd)
        execs += 1
        signal.alarm(timeout)
        try:
            outcomes[check_one(data)] += 1
        except _Hang:
            findings += 1
            _save(artifacts, "timeout", data, f"no result after {timeout} s")
        except Exception as exc:  # noqa: BLE001 - every other exception is a finding
            findings += 1
            outcomes[f"FINDING {type(exc).__name__}"] += 1
            _save(artifacts, "crash", data, f"{type(exc).__name__}: {exc}")
        finally:
            signal.alarm(0)
    print(f"engine=mutate execs={execs} seconds={seconds} exec/s={execs / max(seconds, 1):.0f} "
          f"findings={findings}")
    for name, count in outcomes.most_common():
        print(f"  {name}: {count}")
    return 1 if findings else 0


def _save(artifacts: Path, kind: str, data: bytes, why: str) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"{kind}-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    print(f"FINDING {path}: {why}", file=sys.stderr)


def replay(path: Path) -> int:
    data = path.read_bytes()
    t0 = time.perf_counter()
    outcome = check_one(data)  # raises on a finding, with the traceback
    print(f"{path}: {outcome} in {time.perf_counter() - t0:.3f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--timeout", type=int, default=10, help="hang threshold per input (s)")
    parser.add_argument("--rss-mb", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0, help="mutate engine's random seed")
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"))
    parser.add_argument("--replay", type=Path, nargs="*", default=None)
    args = parser.parse_args(argv)
    engine = args.engine
    if args.replay is not None:
        engine = "replay"
    elif engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "mutate"
    if engine == "atheris":
        import atheris

        # Coverage feedback needs Pillow's plugins and visionrt instrumented at import time,
        # so nothing before this point may import them.
        with atheris.instrument_imports(include=["PIL", "visionrt"]):
            import PIL.Image  # noqa: F401

            import visionrt.images  # noqa: F401
    # A decompression-bomb warning must never escape as anything but ImageTooLargeError (S7).
    from PIL import Image

    warnings.simplefilter("error", Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # metadata noise
    if args.replay is not None:
        return max((replay(p) for p in args.replay), default=0)
    # libFuzzer adds interesting inputs to the corpus folder, so a fixed default accumulates
    # coverage from one run to the next.
    corpus = args.corpus or Path(tempfile.gettempdir()) / "visionrt-fuzz-corpus"
    write_corpus(corpus)
    print(f"engine={engine} corpus={corpus} artifacts={args.artifacts}", flush=True)
    if engine == "atheris":
        args.artifacts.mkdir(parents=True, exist_ok=True)
        run_atheris(corpus, args.artifacts, args.seconds, args.timeout, args.rss_mb)
        return 0  # not reached: atheris exits the process
    return run_mutate(corpus, args.artifacts, args.seconds, args.timeout, args.seed)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
