#!/usr/bin/env python3
"""Make small Canon-CR2-structured raw files that dcraw, rawpy (LibRaw) and exiftool read.

The project's own test-data generator (started from ../shared/tools/make_synthetic_cr2.py).
No real CR2 with image data exists on these machines, so the tests write their own: a TIFF
container with Canon's 'CR' marker, an IFD0 (Make, Model, DateTime, ISO) and a raw IFD
whose one strip is a 14-bit lossless JPEG of the photosites. `dcraw -D -4 -t 0` and
rawpy's ``raw_image`` give back exactly the array written, row 0 at the top (the
decoder's raster, before any flip into FITS order).

Two kinds of raster:

- ``sky_frame``: Poisson background near 2000 counts with a few bright stars.
- ``bayer_frame``: every photosite of one colour carries the same value, so a test can
  tell which colour a decoder (or our FITS orientation) put where. Canon sensors read
  R G1 on the decoder's even rows and G2 B on its odd rows; flipped vertically into
  FITS order (row 0 = bottom) that is the manual's table, G2 B on row 0.

Use it from a test (``write_cr2(path, bayer_frame(24, 36))``) or from a shell::

    python tests/cr2_maker.py OUT.cr2 [--height H] [--width W] [--seed N] [--truth]
    python tests/cr2_maker.py OUT.cr2 --bayer [--values R G1 G2 B]
    python tests/cr2_maker.py OUT.cr2 --preview [--orientation 6]

Needs numpy and imagecodecs (both in the project's test extra). Exposure tags can be
added afterwards with exiftool, e.g.
``exiftool -overwrite_original -ExposureTime=120 -ISO=100 OUT.cr2``.
"""
from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

#: Default photosite values of ``bayer_frame``: R, G1, G2, B (all distinct).
BAYER_VALUES = (1000, 2000, 2100, 3000)


def sky_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Return a uint16 raster looking like a night sky: a noisy background and 12 stars."""
    rng = np.random.default_rng(seed)
    frame = rng.poisson(2000, (height, width)).astype(np.float64)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(12):
        y, x = rng.uniform(10, height - 10), rng.uniform(10, width - 10)
        frame += rng.uniform(2000, 12000) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2))
    return np.clip(frame, 0, 2**14 - 1).astype(np.uint16)


def bayer_frame(height: int, width: int, values: tuple[int, int, int, int] = BAYER_VALUES) -> np.ndarray:
    """Return a decoder-order raster whose R, G1, G2 and B photosites hold ``values``.

    Decoder order is row 0 at the top: R G1 on even rows, G2 B on odd rows (Canon's RGGB).
    ``height`` and ``width`` must be even so every 2x2 cell is complete; dcraw and LibRaw
    refuse rasters under 22 photosites a side.
    """
    if height % 2 or width % 2:
        raise ValueError(f'a Bayer frame needs an even height and width, not {height}x{width}')
    red, green1, green2, blue = values
    frame = np.empty((height, width), dtype=np.uint16)
    frame[0::2, 0::2] = red
    frame[0::2, 1::2] = green1
    frame[1::2, 0::2] = green2
    frame[1::2, 1::2] = blue
    return frame


def lossless_jpeg(raw: np.ndarray) -> bytes:
    """Encode ``raw`` as one-component 14-bit lossless JPEG the way both decoders accept it.

    dcraw and LibRaw skip one byte after the SOF3 segment (real CR2s have one there),
    so a fill byte is inserted at that place.
    """
    import imagecodecs

    data = imagecodecs.ljpeg_encode(raw, bitspersample=14)
    sof = data.find(b'\xff\xc3')
    end = sof + 2 + int.from_bytes(data[sof + 2:sof + 4], 'big')
    return data[:end] + b'\xff' + data[end:]


def _ifd(entries: list[tuple[int, int, int, int | bytes]], next_offset: int) -> bytes:
    """Pack TIFF directory ``entries`` (tag, type, count, value or offset) in tag order."""
    out = struct.pack('<H', len(entries))
    for tag, kind, count, value in sorted(entries):
        packed = value if isinstance(value, bytes) else struct.pack('<I', value)
        out += struct.pack('<HHI', tag, kind, count) + packed
    return out + struct.pack('<I', next_offset)


def preview_jpeg(raw: np.ndarray, quality: int = 85) -> bytes:
    """Return a colour JPEG of ``raw`` (decoder order), standing in for a camera's preview.

    The red channel is the raster scaled to 8 bits; green and blue are zero, so a test
    can tell the picture's orientation from its pixels.
    """
    import io

    from PIL import Image

    picture = np.zeros(raw.shape + (3,), dtype=np.uint8)
    picture[..., 0] = raw.astype(np.float64) * (255 / max(1, int(raw.max())))
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format='JPEG', quality=quality)
    return buffer.getvalue()


def cr2_bytes(raw: np.ndarray, model: str = 'Canon EOS 100D', when: str = '2016:09:09 08:11:52',
              preview: bytes | None = None, orientation: int | None = None) -> bytes:
    """Return the bytes of a CR2 file whose raw strip decodes to ``raw``.

    ``preview`` (JPEG bytes) is stored as IFD0's strip, where Canon keeps the
    full-size preview; ``orientation`` (EXIF 1-8) goes in IFD0 as the camera writes it.
    """
    strip = lossless_jpeg(raw)
    strings = [b'Canon\0', model.encode() + b'\0', when.encode() + b'\0']
    ifd0_count = 4 + (3 if preview else 0) + (1 if orientation else 0)
    ifd0_at = 16
    raw_ifd_at = ifd0_at + 2 + 12 * ifd0_count + 4
    strings_at = raw_ifd_at + 2 + 12 * 3 + 4
    strip_at = strings_at + sum(map(len, strings))
    strip_at += strip_at % 2
    preview_at = strip_at + len(strip)
    preview_at += preview_at % 2
    offsets = np.cumsum([strings_at] + [len(s) for s in strings[:-1]])
    ifd0 = [(tag, 2, len(text), int(at)) for tag, text, at in zip((271, 272, 306), strings, offsets)]
    ifd0.append((0x8827, 3, 1, struct.pack('<HH', 100, 0)))  # ISO 100
    if preview:
        ifd0 += [(259, 3, 1, struct.pack('<HH', 6, 0)), (273, 4, 1, preview_at),
                 (279, 4, 1, len(preview))]
    if orientation:
        ifd0.append((274, 3, 1, struct.pack('<HH', orientation, 0)))
    raw_ifd = [(259, 3, 1, struct.pack('<HH', 6, 0)), (273, 4, 1, strip_at), (279, 4, 1, len(strip))]
    out = b'II*\0' + struct.pack('<I', ifd0_at) + b'CR\x02\0' + struct.pack('<I', raw_ifd_at)
    out += _ifd(ifd0, raw_ifd_at) + _ifd(raw_ifd, 0) + b''.join(strings)
    out += b'\0' * (strip_at - len(out)) + strip
    if preview:
        out += b'\0' * (preview_at - len(out)) + preview
    return out


def write_cr2(path: str | Path, raw: np.ndarray, **tags) -> Path:
    """Write ``raw`` (uint16, decoder order) as a CR2 at ``path`` and return the path.

    ``tags`` are :func:`cr2_bytes`'s keywords (model, when, preview, orientation).
    """
    path = Path(path)
    path.write_bytes(cr2_bytes(raw, **tags))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out')
    parser.add_argument('--height', type=int, default=348)
    parser.add_argument('--width', type=int, default=520)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--bayer', action='store_true',
                        help='one value per Bayer colour instead of a sky (see --values)')
    parser.add_argument('--values', type=int, nargs=4, default=BAYER_VALUES, metavar=('R', 'G1', 'G2', 'B'))
    parser.add_argument('--truth', action='store_true', help='also save the raster as OUT.npy')
    parser.add_argument('--preview', action='store_true',
                        help='embed a full-size JPEG preview of the raster, as cameras do')
    parser.add_argument('--orientation', type=int, choices=range(1, 9), default=None,
                        help='EXIF orientation to record (6: rotate 90 degrees clockwise to view)')
    args = parser.parse_args(argv)
    if args.bayer:
        raw = bayer_frame(args.height, args.width, tuple(args.values))
    else:
        raw = sky_frame(args.height, args.width, args.seed)
    out = write_cr2(args.out, raw, preview=preview_jpeg(raw) if args.preview else None,
                    orientation=args.orientation)
    if args.truth:
        np.save(out.with_suffix('.npy'), raw)


if __name__ == '__main__':
    main()
