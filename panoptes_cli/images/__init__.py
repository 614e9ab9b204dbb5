"""Images from PANOPTES cameras: crops, saturation masks, pretty JPGs and timelapses.

The submodules handle the Bayer pattern (:mod:`~panoptes_cli.images.bayer`),
Canon raw files (:mod:`~panoptes_cli.images.cr2`), FITS files
(:mod:`~panoptes_cli.images.fits`), focus metrics
(:mod:`~panoptes_cli.images.focus`) and plots (:mod:`~panoptes_cli.images.plot`).

Importing this package is cheap: numpy, astropy, matplotlib and loguru load inside
the functions that use them.

>>> import numpy as np
>>> from panoptes_cli.images import crop_data, mask_saturated
>>> crop_data(np.arange(100).reshape(10, 10), box_width=2)
array([[44, 45],
       [54, 55]])
>>> mask_saturated(np.array([10, 250, 255], dtype=np.uint8)).mask
array([False,  True,  True])
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from panoptes_cli.error import IllegalValue, InvalidSystemCommand, NotFound, Timeout
from panoptes_cli.files import atomic_path

# The Debian package that installs each external program the images tools run.
DEBIAN_PACKAGES = {'dcraw': 'dcraw', 'exiftool': 'libimage-exiftool-perl', 'ffmpeg': 'ffmpeg'}

PathLike = str | os.PathLike


def find_program(name: str) -> str:
    """Return the full path of an external program, or say how to install it.

    >>> find_program('no-such-program-here')
    Traceback (most recent call last):
    ...
    panoptes_cli.error.InvalidSystemCommand: InvalidSystemCommand: no-such-program-here is not installed (or not on PATH); install it with: sudo apt-get install no-such-program-here
    """
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(os.path.basename(name), os.path.basename(name))
        raise InvalidSystemCommand(
            f'{name} is not installed (or not on PATH); install it with: sudo apt-get install {package}')
    return path


def read_image(fname: PathLike):
    """Return the pixels of a FITS image (``.fits``, ``.fits.fz``) or a CR2 raw frame.

    >>> from pathlib import Path
    >>> SHARED = Path(__file__).resolve().parents[3] / 'shared' / 'data'
    >>> read_image(SHARED / 'tiny.fits').shape, read_image(SHARED / 'cr2' / 'synthetic.cr2').shape
    ((200, 200), (348, 520))
    """
    path = Path(fname)
    if _image_kind(path) == '.cr2':
        from panoptes_cli.images.cr2 import read_cr2

        return read_cr2(path)
    from panoptes_cli.images.fits import getdata

    return getdata(path)


def crop_data(data, box_width: int = 200, center=None, data_only: bool = True, wcs=None,
              **kwargs):
    """Return a cropped portion of the image.

    The box is centred on the middle of the data unless ``center`` is given.

    >>> import numpy as np
    >>> from panoptes_cli.images import crop_data
    >>> data = np.arange(36).reshape(6, 6)
    >>> crop_data(data, box_width=2)
    array([[14, 15],
           [20, 21]])
    >>> crop_data(data, box_width=3, center=(1, 1))  # (x, y)
    array([[ 0,  1,  2],
           [ 6,  7,  8],
           [12, 13, 14]])
    >>> cutout = crop_data(data, box_width=2, data_only=False)
    >>> cutout.position_original
    (3, 3)
    >>> crop_data(data, box_width=7)
    Traceback (most recent call last):
    ...
    panoptes_cli.error.IllegalValue: IllegalValue: Can't crop a 7 pixel box from data of shape (6, 6)

    Args:
        data (numpy.ndarray): Array of data.
        box_width (int, optional): Size of box width in pixels, defaults to 200px.
        center (tuple(int, int), optional): Crop around this (x, y) position, default the
            image center.
        data_only (bool, optional): If True (default), return only data. If False return
            the ``Cutout2D`` object.
        wcs (None or astropy.wcs.WCS, optional): A World Coordinate System that will be
            cropped along with the data if provided.
        **kwargs: Passed to ``astropy.nddata.Cutout2D`` (e.g. ``mode``).

    Returns:
        A cropped version of the data if ``data_only=True``, otherwise an
        ``astropy.nddata.Cutout2D`` object.

    Raises:
        IllegalValue: The box is larger than the data (the manual only checked the rows,
            with an assert).
    """
    from astropy.nddata import Cutout2D

    from panoptes_cli.logging import logger

    rows, cols = data.shape[-2:]
    if box_width > rows or box_width > cols:
        raise IllegalValue(f"Can't crop a {box_width} pixel box from data of shape {data.shape}")
    if center is None:
        position = (cols // 2, rows // 2)
    else:
        position = (int(center[0]), int(center[1]))
    logger.debug(f'Cropping a {box_width} pixel box around (x, y) = {position}')
    cutout = Cutout2D(data, position, box_width, wcs=wcs, **kwargs)
    return cutout.data if data_only else cutout


def mask_saturated(data, saturation_level=None, threshold: float = 0.9, bit_depth=None,
                   dtype=None):
    """Convert data to a masked array with saturated values masked.

    >>> import numpy as np
    >>> from astropy import units as u
    >>> from panoptes_cli.images import mask_saturated
    >>> data = np.array([0, 1000, 3700, 4095], dtype=np.uint16)
    >>> mask_saturated(data, bit_depth=12).mask
    array([False, False,  True,  True])
    >>> mask_saturated(data, bit_depth=12 * u.bit / u.pixel).mask
    array([False, False,  True,  True])
    >>> mask_saturated(data, saturation_level=1000).mask
    array([False, False,  True,  True])
    >>> mask_saturated(data).mask  # 90% of the uint16 maximum
    array([False, False, False, False])
    >>> mask_saturated(data, saturation_level=500, dtype=np.float32).dtype
    dtype('float32')
    >>> mask_saturated(data.astype(float))
    Traceback (most recent call last):
    ...
    panoptes_cli.error.IllegalValue: IllegalValue: Neither saturation_level or bit_depth given, and data is not an integer type. Cannot determine correct saturation level.
    >>> mask_saturated(data, bit_depth=12 * u.m)
    Traceback (most recent call last):
    ...
    panoptes_cli.error.IllegalValue: IllegalValue: bit_depth must have units of bits or bits/pixel, got <Quantity 12. m>

    Args:
        data (array_like): The numpy data array.
        saturation_level (scalar, optional): The saturation level. If not given then the
            saturation level will be set to threshold times the maximum pixel value.
        threshold (float, optional): The fraction of the maximum pixel value to use as
            the saturation level, default 0.9.
        bit_depth (astropy.units.Quantity or int, optional): The effective bit depth of the
            data. If given the maximum pixel value will be assumed to be 2**bit_depth - 1,
            otherwise it is inferred from the data type of the data.
        dtype (numpy.dtype, optional): The requested dtype for the masked array. If not
            given the dtype of the masked array will be same as data.

    Returns:
        numpy.ma.MaskedArray: The masked numpy array.

    Raises:
        IllegalValue: ``bit_depth`` is a Quantity whose units are neither bits nor
            bits/pixel, or neither ``saturation_level`` nor ``bit_depth`` is given and
            the data is not of an integer type.
    """
    import numpy as np

    from panoptes_cli.logging import logger

    data = np.asanyarray(data)
    # ``is None``: a saturation level of 0 is a level (the manual's ``if not`` ignored it).
    if saturation_level is None:
        if bit_depth is not None:
            saturation_level = threshold * (2 ** _bits(bit_depth) - 1)
        else:
            try:
                saturation_level = threshold * np.iinfo(data.dtype).max
            except ValueError:
                raise IllegalValue(
                    'Neither saturation_level or bit_depth given, and data is not an integer '
                    'type. Cannot determine correct saturation level.') from None
    logger.debug(f'Masking image using saturation level {saturation_level!r}')
    return np.ma.array(data, mask=(data > saturation_level), dtype=dtype)


def _bits(bit_depth) -> int:
    from astropy import units as u

    if not isinstance(bit_depth, u.Quantity):
        return int(bit_depth)
    for unit in (u.bit, u.bit / u.pixel):
        with contextlib.suppress(u.UnitConversionError):
            return int(bit_depth.to_value(unit))
    raise IllegalValue(f'bit_depth must have units of bits or bits/pixel, got {bit_depth!r}')


def pretty_image_path(fname: PathLike, output_dir: PathLike | None = None) -> Path:
    """Return where :func:`make_pretty_image` writes the JPG for ``fname``.

    ``x.cr2``, ``x.fits`` and ``x.fits.fz`` all become ``x.jpg``, beside the input
    unless ``output_dir`` is given.

    >>> from panoptes_cli.images import pretty_image_path
    >>> str(pretty_image_path('/data/my.fits.dir/20160909T081152.fits.fz'))
    '/data/my.fits.dir/20160909T081152.jpg'
    >>> str(pretty_image_path('IMG_0001.CR2', output_dir='/tmp'))
    '/tmp/IMG_0001.jpg'
    """
    path = Path(fname)
    name = re.sub(r'(\.fits?(\.fz|\.gz)?|\.cr2)$', '', path.name, flags=re.IGNORECASE)
    if name == path.name:
        name = path.stem
    return Path(output_dir if output_dir is not None else path.parent) / f'{name}.jpg'


def make_pretty_image(fname: PathLike, title: str | None = None, timeout: float = 15,
                      img_type: str | None = None, link_path: PathLike | None = None,
                      **kwargs) -> str:
    """Make a pretty image.

    This will create a JPG file from either a CR2 (Canon) or FITS file, beside
    it (``x.cr2``, ``x.fits`` or ``x.fits.fz`` becomes ``x.jpg``). Raw Bayer
    frames (every CR2, and FITS whose FILTER is RGGB or which have a BAYERPAT
    keyword) become colour pictures at half size, one pixel per R-G-G-B
    super-pixel, each channel's sky level made neutral grey; other FITS images
    become grey pictures. Both use an asinh stretch (astropy.visualization),
    which shows the faint sky and keeps bright stars from saturating.

    The default title is ``<FIELD> (<EXPTIME>s <FILTER>) <DATE-OBS>`` from the
    FITS header, as in the manual's version (the file name stands in for a
    missing FIELD, the time in the file name or else the current time for a
    missing DATE-OBS, and unknown parts are left out rather than printed as
    'Unknown ...'); for a CR2 it is ``<file name> (<ExposureTime>s ISO <ISO>)
    <DateTimeOriginal>`` from its EXIF.

    >>> import numpy as np
    >>> from panoptes_cli.images import make_pretty_image
    >>> from panoptes_cli.images.fits import write_fits
    >>> fits_fn = getfixture('tmp_path') / '20160909T081152.fits'
    >>> rng = np.random.default_rng(0)
    >>> write_fits(rng.poisson(2000, (100, 150)).astype(np.uint16), {'FIELD': 'Test'}, fits_fn)
    >>> jpg = make_pretty_image(fits_fn, title='A test', link_path=fits_fn.parent / 'latest.jpg')
    >>> os.path.basename(jpg), os.path.basename(os.readlink(fits_fn.parent / 'latest.jpg'))
    ('20160909T081152.jpg', '20160909T081152.jpg')

    Args:
        fname (str): The path to the raw image.
        title (None or str, optional): Title to be placed on image, default as above.
        timeout (int, optional): Timeout in seconds for decoding a CR2 with dcraw (when
            LibRaw cannot), default 15 seconds.
        img_type (None or str, optional): Image type of fname, one of '.cr2' or '.fits'
            ('.fz' also). The default is ``None``, in which case the file extension of
            fname is used.
        link_path (None or str, optional): Path to location that image should be
            sym-linked. The directory must exist. An existing link there is replaced.
        **kwargs: ``jpg_fname`` (where to write the JPG instead), ``overwrite`` (default
            True: a pretty picture is regenerated), ``quality`` (JPEG quality, default 90),
            ``decoder`` (for a CR2, see :func:`panoptes_cli.images.cr2.read_cr2`).

    Returns:
        str: Filename of the JPG that was created (the manual's version returned
        ``link_path`` when it linked).

    Raises:
        FileNotFoundError: ``fname`` or the directory of ``link_path`` does not exist.
        FileExistsError: The JPG exists and ``overwrite=False``.
        IllegalValue: ``fname`` is neither a CR2 nor a FITS file.
    """
    fname = Path(fname)
    if not fname.exists():
        raise FileNotFoundError(2, 'No such file or directory', os.fspath(fname))
    kind = (img_type or _image_kind(fname)).lower()
    if kind not in ('.cr2', '.fits', '.fit', '.fz'):
        raise IllegalValue(f'{fname}: not a CR2 or FITS file (by its extension: .cr2, .fits, '
                           '.fits.fz)')
    if link_path is not None and not Path(link_path).parent.is_dir():
        raise FileNotFoundError(2, 'No such directory for the link', os.fspath(link_path))

    jpg_fname = Path(kwargs.get('jpg_fname') or pretty_image_path(fname))
    if kind == '.cr2':
        picture, default_title = _picture_from_cr2(fname, timeout=timeout,
                                                   decoder=kwargs.get('decoder', 'auto'))
    else:
        picture, default_title = _picture_from_fits(fname)
    with atomic_path(jpg_fname, kwargs.get('overwrite', True)) as temp:
        _save_jpg(picture, title or default_title, temp, quality=kwargs.get('quality', 90))

    if link_path is not None:
        _replace_symlink(jpg_fname.resolve(), Path(link_path))
    return str(jpg_fname)


def _picture_from_fits(fname: Path) -> tuple:
    """Return the stretched picture of a FITS image and its default title."""
    from panoptes_cli.images.fits import getdata

    data, header = getdata(fname, header=True)
    is_bayer = str(header.get('FILTER', '')).upper() == 'RGGB' or 'BAYERPAT' in header
    picture = _colour_picture(data) if is_bayer and data.ndim == 2 else _grey_picture(data)
    date = header.get('DATE-OBS') or _date_from_name(fname)
    title = _title(header.get('FIELD') or fname.name, header.get('EXPTIME'),
                   header.get('FILTER'), date)
    return picture, title


def _picture_from_cr2(fname: Path, timeout: float, decoder: str = 'auto') -> tuple:
    """Return the stretched colour picture of a CR2 raw frame and its default title."""
    from panoptes_cli.images import cr2

    exif_reader = cr2.start_read_exif(fname)
    try:
        picture = _colour_picture(cr2.read_cr2(fname, decoder=decoder, timeout=timeout))
    except BaseException:
        exif_reader.cancel()
        raise
    exif = exif_reader.result()
    date = cr2.exif_date(exif) or _date_from_name(fname)
    iso = exif.get('ISO')
    title = _title(fname.name, cr2.exif_exposure_time(exif),
                   f'ISO {iso}' if iso is not None else None, date)
    return picture, title


def _title(name: str, exptime, filter_name, date) -> str:
    """``<name> (<exptime>s <filter>) <date>``, leaving out what is not known.

    >>> _title('KIC 8462852', 120.4, 'RGGB', '2016-09-09T08:12:26')
    'KIC 8462852 (120.4s RGGB) 2016-09-09 08:12:26'
    >>> _title('noheader.fits', None, None, '2016-09-09 08:12:26')
    'noheader.fits 2016-09-09 08:12:26'
    """
    details = ' '.join(part for part in (f'{exptime}s' if exptime not in (None, '') else '',
                                         str(filter_name or '')) if part)
    return ' '.join(part for part in (str(name), f'({details})' if details else '',
                                      str(date).replace('T', ' ', 1)) if part)


def _date_from_name(fname: Path) -> str:
    """The time in a PANOPTES file name (``20160909T081152.fits``), else the current time."""
    from panoptes_cli.time import current_time

    match = re.search(r'(\d{8}T\d{6})', fname.name)
    if match:
        text = match.group(1)
        return f'{text[0:4]}-{text[4:6]}-{text[6:8]} {text[9:11]}:{text[11:13]}:{text[13:15]}'
    return current_time(pretty=True)


def _sky_and_noise(samples):
    """Robust sky level (median) and noise (1.4826 MAD) of some pixels."""
    import numpy as np

    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return 0.0, 1.0
    sky = float(np.median(samples))
    noise = 1.4826 * float(np.median(np.abs(samples - sky)))
    return sky, noise if noise > 0 else max(float(samples.std()), 1.0)


def _stretch(channels: list, sample_step: int):
    """Stretch channels (sky-subtracted, sky made grey) with one asinh stretch into uint8.

    The black point sits 2 sigma below the sky, so the sky is a dark grey
    with its noise visible and nothing is clipped to pure black; the white
    point is the 99.95th percentile, so only the cores of the brightest stars
    saturate. All channels share one stretch, which keeps star colours.
    """
    import numpy as np
    from astropy.visualization import AsinhStretch

    levels = [_sky_and_noise(channel[::sample_step, ::sample_step].ravel())
              for channel in channels]
    mean_sky = np.mean([sky for sky, _ in levels]) or 1.0
    scaled = []
    for channel, (sky, _) in zip(channels, levels):
        gain = mean_sky / sky if sky > 0 else 1.0
        scaled.append((channel.astype(np.float32) - np.float32(sky)) * np.float32(gain))
    noise = float(np.mean([noise * (mean_sky / sky if sky > 0 else 1.0)
                           for (sky, noise) in levels]))
    black = -2.0 * noise
    sample = np.concatenate([plane[::sample_step, ::sample_step].ravel() for plane in scaled])
    white = float(np.nanpercentile(sample, 99.95))
    if white <= black + 10 * noise:
        white = black + 10 * noise
    stretch = AsinhStretch(a=0.02)
    result = np.empty((*scaled[0].shape, len(scaled)), dtype=np.uint8)
    for index, plane in enumerate(scaled):
        plane -= np.float32(black)
        plane *= np.float32(1.0 / (white - black))
        np.nan_to_num(plane, copy=False, nan=0.0)
        np.clip(plane, 0.0, 1.0, out=plane)
        values = stretch(plane, clip=False, out=plane)
        values *= np.float32(255.0)
        result[..., index] = values + np.float32(0.5)
    return result


def _colour_picture(data):
    """One RGB pixel per RGGB super-pixel of a raw Bayer frame (see :mod:`.bayer`)."""
    import numpy as np

    data = np.asarray(data)
    rows, cols = data.shape[0] // 2 * 2, data.shape[1] // 2 * 2
    data = data[:rows, :cols]
    red = data[1::2, 0::2]
    green = (data[0::2, 0::2].astype(np.float32) + data[1::2, 1::2]) * np.float32(0.5)
    blue = data[0::2, 1::2]
    # Row 0 of the array is the bottom of the sky picture (FITS convention).
    return _stretch([red, green, blue], _sample_step(red.shape))[::-1]


def _grey_picture(data):
    import numpy as np

    data = np.asarray(data)
    while data.ndim > 2:
        data = data[0]
    return _stretch([data], _sample_step(data.shape))[::-1, :, 0]


def _sample_step(shape: tuple) -> int:
    # About 250,000 pixels are plenty for sky levels and percentiles.
    return max(1, int((shape[0] * shape[1] / 250_000) ** 0.5))


def _save_jpg(picture, title: str, path: Path, quality: int = 90) -> None:
    """Write the picture as a JPG with the title in a black band above it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(picture)
    width, height = image.size
    font_size = max(12, min(48, width // 60))
    font = ImageFont.load_default(size=font_size)
    # Shrink the title to fit narrow pictures (down to a still legible size).
    while font_size > 8 and font.getlength(title) > width - font_size:
        font_size -= 1
        font = ImageFont.load_default(size=font_size)
    band = int(font_size * 1.8)
    canvas = Image.new(image.mode, (width, height + band), 'black')
    canvas.paste(image, (0, band))
    draw = ImageDraw.Draw(canvas)
    draw.text((font_size // 2, band // 2), title, fill='white', font=font, anchor='lm')
    canvas.save(path, format='JPEG', quality=quality)


def _image_kind(fname: Path) -> str:
    suffixes = [suffix.lower() for suffix in fname.suffixes]
    if suffixes[-1:] == ['.fz'] or suffixes[-2:-1] in (['.fits'], ['.fit']):
        return '.fits'
    return suffixes[-1] if suffixes else ''


def _replace_symlink(target: Path, link: Path) -> None:
    """Point ``link`` at ``target``, replacing any link there in one step."""
    with atomic_path(link) as temp:
        os.symlink(target, temp)


def timelapse_path(directory: PathLike) -> Path:
    """Return the default timelapse file for ``directory``.

    PANOPTES images live in ``.../<field>/<camera>/<sequence time>/``; there
    the movie is ``<field>_<camera>_<sequence time>.mp4`` inside that
    directory, as in the manual. Any other directory gets ``<name>.mp4`` inside it.

    >>> from panoptes_cli.images import timelapse_path
    >>> str(timelapse_path('/images/fields/KIC8462852/ee04d1/20160909T081152/'))
    '/images/fields/KIC8462852/ee04d1/20160909T081152/KIC8462852_ee04d1_20160909T081152.mp4'
    >>> str(timelapse_path('night'))
    'night/night.mp4'
    """
    parts = Path(os.path.abspath(directory)).parts[1:]
    if len(parts) >= 3 and re.fullmatch(r'\d{8}T\d{6}', parts[-1]):
        name = '_'.join(parts[-3:])
    else:
        name = parts[-1] if parts else 'timelapse'
    return Path(directory) / f'{name}.mp4'


def make_timelapse(directory: PathLike, fn_out: PathLike | None = None,
                   glob_pattern: str = '20[1-9][0-9]*T[0-9]*.jpg', overwrite: bool = False,
                   timeout: float = 60, **kwargs) -> str:
    """Create a timelapse.

    A timelapse (H.264 MP4, made by ffmpeg) is created from the images in
    ``directory`` that match ``glob_pattern``, in name order (PANOPTES names are
    times, so that is time order). Frames are scaled to fit in 1920x1080,
    keeping their aspect ratio (the manual's version stretched them to
    1920x1080). The movie is written under a temporary name and renamed when
    complete, so a failed or interrupted run leaves nothing behind.

    >>> import subprocess
    >>> from panoptes_cli.images import make_timelapse
    >>> frames = getfixture('tmp_path') / 'frames'
    >>> frames.mkdir()
    >>> for second in range(3):
    ...     _ = subprocess.run(['ffmpeg', '-loglevel', 'error', '-f', 'lavfi', '-i',
    ...                         'testsrc=size=160x120', '-frames:v', '1',
    ...                         str(frames / f'20160909T08115{second}.jpg')], check=True)
    >>> movie = make_timelapse(frames)
    >>> os.path.basename(movie), os.path.getsize(movie) > 0
    ('frames.mp4', True)
    >>> make_timelapse(frames)
    Traceback (most recent call last):
    ...
    FileExistsError: [Errno 17] File exists: '.../frames/frames.mp4'

    Args:
        directory (str): Directory containing image files.
        fn_out (str, optional): Full path to output file name; default
            :func:`timelapse_path` of the directory.
        glob_pattern (str, optional): A glob file pattern of images to include, default
            '20[1-9][0-9]*T[0-9]*.jpg', which corresponds to the observation images but
            excludes any pointing images. The pattern is relative to ``directory``.
        overwrite (bool, optional): Overwrite timelapse if exists, default False.
        timeout (int): Timeout for making movie, default 60 seconds.
        **kwargs: ``fps`` (frames per second, default 3) and ``progress``, a callable
            given the number of frames encoded so far and the total, as ffmpeg's
            ``-progress`` output reports them.

    Returns:
        str: Name of output file.

    Raises:
        error.InvalidSystemCommand: ffmpeg is not found, or it failed.
        FileExistsError: ``fn_out`` already exists and ``overwrite=False``.
        FileNotFoundError: ``directory`` does not exist.
        error.NotFound: No file matches the pattern.
        error.Timeout: ffmpeg took longer than ``timeout``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(2, 'No such directory', os.fspath(directory))
    fn_out = Path(fn_out) if fn_out is not None else timelapse_path(directory)
    if fn_out.exists() and not overwrite:
        raise FileExistsError(17, 'File exists', os.fspath(fn_out))
    ffmpeg = find_program('ffmpeg')
    frames = timelapse_frames(directory, glob_pattern)
    if not frames:
        raise NotFound(f'{directory}: no images match {glob_pattern!r}; pass --glob to match others')

    fps = kwargs.get('fps', 3)
    with contextlib.ExitStack() as stack:
        listing = stack.enter_context(tempfile.NamedTemporaryFile(
            'w', suffix='.txt', prefix='timelapse-', delete=False))
        stack.callback(os.unlink, listing.name)
        for frame in frames:
            listing.write(f"file '{_concat_quote(os.path.abspath(frame))}'\n")
            listing.write(f'duration {1 / fps:.6f}\n')
        listing.close()
        temp = stack.enter_context(atomic_path(fn_out, overwrite))
        command = [
            ffmpeg, '-nostdin', '-hide_banner', '-loglevel', 'error', '-y',
            '-f', 'concat', '-safe', '0', '-i', listing.name,
            '-vf', ('scale=w=min(1920\\,iw):h=min(1080\\,ih):force_original_aspect_ratio=decrease'
                    ':force_divisible_by=2'),
            '-r', str(fps), '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-movflags', '+faststart',
            '-progress', 'pipe:1', '-nostats', '-f', 'mp4', os.fspath(temp),
        ]
        from panoptes_cli.logging import logger

        logger.debug(f'Timelapse command: {command}')
        _run_ffmpeg(command, timeout, kwargs.get('progress'), len(frames), fn_out)
    return str(fn_out)


def timelapse_frames(directory: PathLike,
                     glob_pattern: str = '20[1-9][0-9]*T[0-9]*.jpg') -> list[str]:
    """Return the images of ``directory`` matching ``glob_pattern``, in name (time) order."""
    return sorted(glob.glob(os.path.join(glob.escape(os.fspath(directory)), glob_pattern)))


def _concat_quote(path: str) -> str:
    # The concat demuxer's quoting: close the quote, escape the quote, reopen.
    return path.replace("'", "'\\''")


def _run_ffmpeg(command: list, timeout: float, progress: Callable[[int, int], None] | None,
                total: int, fn_out: Path) -> None:
    """Run ffmpeg, report its ``-progress`` frame counts, enforce the timeout."""
    import threading

    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors,
                                stdin=subprocess.DEVNULL, text=True)
        # A watchdog, because reading the progress pipe blocks.
        timed_out = threading.Event()

        def expire():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            for line in proc.stdout:
                key, _, value = line.strip().partition('=')
                if key == 'frame' and progress is not None and value.isdigit():
                    progress(min(int(value), total), total)
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
            proc.stdout.close()
        if timed_out.is_set():
            raise Timeout(f'{fn_out}: ffmpeg took more than {timeout} s making the timelapse')
        if proc.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors='replace').strip().splitlines()
            raise InvalidSystemCommand(
                f'{fn_out}: ffmpeg failed (status {proc.returncode}): '
                f"{message[-1] if message else 'no message'}")


__all__ = ['crop_data', 'mask_saturated', 'make_pretty_image', 'make_timelapse',
           'pretty_image_path', 'read_image', 'timelapse_path', 'timelapse_frames']
