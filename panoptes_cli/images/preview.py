"""The camera's own JPEG preview inside a CR2, extracted without decoding the raw.

Canon cameras store a full-size JPEG rendering of every frame in the CR2's
first directory. Copying it out takes milliseconds, against a second or more
to decode and stretch the raw: the fast path for a web cam picture. The
preview is stored as the sensor reads out; the camera records how to turn it
(the EXIF orientation), and :func:`extract_preview` applies that, so the
picture comes out right way up.

LibRaw (rawpy) finds the preview; ``exiftool -b -PreviewImage`` is the
fallback for files LibRaw cannot parse.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from panoptes_cli.error import PanError
from panoptes_cli.files import atomic_path
from panoptes_cli.programs import find_program, run

PathLike = str | os.PathLike

# LibRaw's ``sizes.flip`` code -> EXIF orientation (LibRaw maps them with "50132467").
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
_ORIENTATION_TAG = 0x0112


class NoPreview(PanError):
    """The raw file carries no embedded JPEG preview."""


def _orientation_transpose(orientation: int):
    """Return the PIL transpose that shows a picture of this EXIF orientation right way up."""
    from PIL import Image

    return {
        2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)


def _preview_with_rawpy(path: Path) -> tuple[bytes, int]:
    import rawpy

    with rawpy.imread(os.fspath(path)) as raw:
        try:
            thumb = raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            raise NoPreview(f'{path}: no embedded preview in this raw file') from None
        orientation = _FLIP_TO_ORIENTATION.get(raw.sizes.flip, 1)
    if thumb.format == rawpy.ThumbFormat.JPEG:
        return bytes(thumb.data), orientation
    # A few cameras store an uncompressed bitmap instead of a JPEG.
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(thumb.data).save(buffer, format='JPEG', quality=95)
    return buffer.getvalue(), orientation


def _preview_with_exiftool(path: Path, timeout: float) -> tuple[bytes, int]:
    exiftool = find_program('exiftool')
    jpeg = run([exiftool, '-b', '-PreviewImage', os.fspath(path)],
               capture_output=True, timeout=timeout).stdout
    if not jpeg.startswith(b'\xff\xd8'):
        raise NoPreview(f'{path}: no embedded preview in this raw file')
    answer = run([exiftool, '-s3', '-n', '-Orientation', os.fspath(path)],
                 capture_output=True, text=True, timeout=timeout).stdout.strip()
    return jpeg, int(answer) if answer.isdigit() else 1


def read_preview(cr2_fname: PathLike, timeout: float = 30) -> tuple[bytes, int]:
    """Return the embedded JPEG preview's bytes and the frame's EXIF orientation (1-8).

    Raises:
        FileNotFoundError: No such file.
        NoPreview: The file has no preview (or is not a raw file either tool reads).
    """
    path = Path(cr2_fname)
    if not path.is_file():
        raise FileNotFoundError(2, 'No such file', os.fspath(path))
    try:
        import rawpy
    except ImportError:
        return _preview_with_exiftool(path, timeout)
    try:
        return _preview_with_rawpy(path)
    except rawpy.LibRawError:
        # LibRaw cannot parse the file (or its preview): exiftool may still find one.
        return _preview_with_exiftool(path, timeout)


def preview_path(cr2_fname: PathLike, output_dir: PathLike | None = None) -> Path:
    """Return where the preview of ``x.cr2`` goes: ``x.jpg`` beside it or in ``output_dir``.

    >>> preview_path('/data/PAN001/20160909T081152.cr2', '/var/www')
    PosixPath('/var/www/20160909T081152.jpg')
    """
    path = Path(cr2_fname)
    return Path(output_dir or path.parent) / f'{path.stem}.jpg'


def extract_preview(cr2_fname: PathLike, jpg_fname: PathLike | None = None,
                    output_dir: PathLike | None = None, overwrite: bool = False,
                    quality: int = 95) -> str:
    """Write the CR2's embedded JPEG preview, right way up, and return its path.

    A preview that needs no turning is copied as the camera encoded it; one
    the camera recorded as rotated or mirrored is turned and saved again at
    ``quality``, its EXIF orientation then set to 1 so viewers do not turn it twice.
    The file is written atomically: a reader never sees half a picture.

    Args:
        cr2_fname: The CR2 (or another raw format LibRaw reads).
        jpg_fname: Where to write; default ``x.jpg`` beside ``x.cr2`` or in ``output_dir``.
        output_dir: The directory for the default name (must exist).
        overwrite: Replace an existing output (default: FileExistsError).
        quality: JPEG quality when the picture has to be turned.

    Raises:
        FileExistsError: The output exists and ``overwrite`` is False.
        NoPreview: The file carries no preview.
    """
    target = Path(jpg_fname) if jpg_fname else preview_path(cr2_fname, output_dir)
    if not overwrite and target.exists():
        raise FileExistsError(17, 'File exists', os.fspath(target))
    jpeg, orientation = read_preview(cr2_fname)
    transpose = _orientation_transpose(orientation)
    with atomic_path(target, overwrite=overwrite) as temp:
        if transpose is None:
            temp.write_bytes(jpeg)
        else:
            from PIL import Image

            with Image.open(io.BytesIO(jpeg)) as picture:
                # Keep the camera's EXIF (LibRaw adds make, model, date), now upright.
                exif = picture.getexif()
                exif[_ORIENTATION_TAG] = 1
                picture.transpose(transpose).save(temp, format='JPEG', quality=quality,
                                                  exif=exif)
    return os.fspath(target)
