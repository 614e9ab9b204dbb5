"""Pretty pictures: a JPG of a FITS or CR2 frame, stretched to show the sky, with a title."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from panoptes_cli.error import IllegalValue
from panoptes_cli.files import atomic_path
from panoptes_cli.images.fits import getdata
from panoptes_cli.images.reading import image_kind

PathLike = str | os.PathLike


def pretty_image_path(fname: PathLike, output_dir: PathLike | None = None) -> Path:
    """Return where :func:`make_pretty_image` writes the JPG for ``fname``.

    ``x.cr2``, ``x.fits`` and ``x.fits.fz`` all become ``x.jpg``, beside the input
    unless ``output_dir`` is given.

    >>> from panoptes_cli.images.pretty import pretty_image_path
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


@dataclass
class PrettyOptions:
    """How to make one pretty picture (see :func:`make_pretty_image` for each field)."""

    title: str | None = None
    timeout: float = 15
    img_type: str | None = None
    link_path: PathLike | None = None
    jpg_fname: PathLike | None = None
    overwrite: bool = True
    quality: int = 90
    decoder: str = 'auto'
    # A CR2's EXIF from this thread's long-running exiftool, for batches (see images.exiftool).
    keep_exiftool: bool = False


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
    >>> from panoptes_cli.images.pretty import make_pretty_image
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
            ('.fz' also). By default the file's extension decides.
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
    known = {key: kwargs[key] for key in ('jpg_fname', 'overwrite', 'quality', 'decoder')
             if key in kwargs}
    return pretty_picture(fname, PrettyOptions(title=title, timeout=timeout, img_type=img_type,
                                               link_path=link_path, **known))


def pretty_picture(fname: PathLike, options: PrettyOptions) -> str:
    """Make the JPG of one image with typed options; see :func:`make_pretty_image`."""
    fname = Path(fname)
    if not fname.exists():
        raise FileNotFoundError(2, 'No such file or directory', os.fspath(fname))
    kind = (options.img_type or image_kind(fname)).lower()
    if kind not in ('.cr2', '.fits', '.fit', '.fz'):
        raise IllegalValue(f'{fname}: not a CR2 or FITS file (by its extension: .cr2, .fits, '
                           '.fits.fz)')
    link_path = options.link_path
    if link_path is not None and not Path(link_path).parent.is_dir():
        raise FileNotFoundError(2, 'No such directory for the link', os.fspath(link_path))

    jpg_fname = Path(options.jpg_fname or pretty_image_path(fname))
    if kind == '.cr2':
        picture, default_title = _picture_from_cr2(fname, timeout=options.timeout,
                                                   decoder=options.decoder,
                                                   keep_exiftool=options.keep_exiftool)
    else:
        picture, default_title = _picture_from_fits(fname)
    with atomic_path(jpg_fname, options.overwrite) as temp:
        _save_jpg(picture, options.title or default_title, temp, quality=options.quality)

    if link_path is not None:
        _replace_symlink(jpg_fname.resolve(), Path(link_path))
    return str(jpg_fname)


def _picture_from_fits(fname: Path) -> tuple:
    """Return the stretched picture of a FITS image and its default title."""
    data, header = getdata(fname, header=True)
    is_bayer = str(header.get('FILTER', '')).upper() == 'RGGB' or 'BAYERPAT' in header
    picture = _colour_picture(data) if is_bayer and data.ndim == 2 else _grey_picture(data)
    date = header.get('DATE-OBS') or _date_from_name(fname)
    title = _title(header.get('FIELD') or fname.name, header.get('EXPTIME'),
                   header.get('FILTER'), date)
    return picture, title


def _picture_from_cr2(fname: Path, timeout: float, decoder: str = 'auto',
                      keep_exiftool: bool = False) -> tuple:
    """Return the stretched colour picture of a CR2 raw frame and its default title."""
    # cr2 loads numpy when imported: here, so that importing panoptes_cli.images stays cheap.
    from panoptes_cli.images.cr2 import exif_date, exif_exposure_time, read_cr2, start_read_exif

    exif_reader = start_read_exif(fname, keep_exiftool=keep_exiftool)
    try:
        picture = _colour_picture(read_cr2(fname, decoder=decoder, timeout=timeout))
    except BaseException:
        exif_reader.cancel()
        raise
    exif = exif_reader.result()
    date = exif_date(exif) or _date_from_name(fname)
    iso = exif.get('ISO')
    title = _title(fname.name, exif_exposure_time(exif),
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


# Integer frames up to this many levels are stretched through a table of every level.
_MAX_TABLE = 1 << 20


def _stretch(channels: list, sample_step: int, scales: tuple | None = None):
    """Stretch channels (sky-subtracted, sky made grey) with one asinh stretch into uint8.

    The black point sits 2 sigma below the sky, so the sky is a dark grey
    with its noise visible and nothing is clipped to pure black; the white
    point is the 99.95th percentile, so only the cores of the brightest stars
    saturate. All channels share one stretch, which keeps star colours.

    A channel's values are its pixels times its scale (default 1). An
    integer channel is stretched once per level it can hold, into a table
    its pixels then look up: a few thousand levels instead of millions of
    pixels, and the same picture, since every pixel goes through the same
    float32 arithmetic either way.
    """
    import numpy as np

    scales = scales or (1,) * len(channels)

    def values(pixels, scale):
        # Scale 1: the pixels as they are, so that sky levels are computed as they always were.
        return pixels if scale == 1 else pixels.astype(np.float32) * np.float32(scale)

    samples = [values(channel[::sample_step, ::sample_step], scale)
               for channel, scale in zip(channels, scales)]
    levels = [_sky_and_noise(sample.ravel()) for sample in samples]
    mean_sky = np.mean([sky for sky, _ in levels]) or 1.0
    gains = [mean_sky / sky if sky > 0 else 1.0 for sky, _ in levels]

    def sky_subtracted(pixels, scale, sky, gain):
        return (values(pixels, scale).astype(np.float32) - np.float32(sky)) * np.float32(gain)

    noise = float(np.mean([noise * gain for (_, noise), gain in zip(levels, gains)]))
    black = -2.0 * noise
    sample = np.concatenate([sky_subtracted(pixels, scale, sky, gain).ravel()
                             for pixels, scale, (sky, _), gain
                             in zip(samples, scales, levels, gains)])
    white = float(np.nanpercentile(sample, 99.95))
    if white <= black + 10 * noise:
        white = black + 10 * noise
    result = np.empty((*channels[0].shape, len(channels)), dtype=np.uint8)
    for index, (channel, scale, (sky, _), gain) in enumerate(zip(channels, scales, levels, gains)):
        top = _table_size(channel)
        if top is None:
            plane = sky_subtracted(channel, scale, sky, gain)
            result[..., index] = _stretched(plane, black, white)
        else:
            table = _stretched(sky_subtracted(np.arange(top, dtype=np.uint32), scale, sky, gain),
                               black, white)
            np.take(table, channel, out=result[..., index], mode='clip')
    return result


def _table_size(channel):
    """The number of levels of an integer channel (0 up to its largest), None if too many."""
    import numpy as np

    if channel.dtype.kind not in 'ui' or channel.size == 0:
        return None
    if channel.dtype.kind == 'u' and channel.dtype.itemsize <= 2:
        return 1 << (8 * channel.dtype.itemsize)
    low, high = int(channel.min()), int(channel.max())
    return high + 1 if low >= 0 and high < _MAX_TABLE else None


def _stretched(plane, black: float, white: float):
    """The uint8 picture of sky-subtracted float32 values, ``plane`` used up as scratch space."""
    import numpy as np
    from astropy.visualization import AsinhStretch

    plane -= np.float32(black)
    plane *= np.float32(1.0 / (white - black))
    np.nan_to_num(plane, copy=False, nan=0.0)
    np.clip(plane, 0.0, 1.0, out=plane)
    values = AsinhStretch(a=0.02)(plane, clip=False, out=plane)
    values *= np.float32(255.0)
    values += np.float32(0.5)
    return values.astype(np.uint8)


def _colour_picture(data):
    """One RGB pixel per RGGB super-pixel of a raw Bayer frame (see :mod:`.bayer`)."""
    import numpy as np

    from panoptes_cli.images.bayer import colour_planes

    data = np.asarray(data)
    rows, cols = data.shape[0] // 2 * 2, data.shape[1] // 2 * 2
    planes = colour_planes(data[:rows, :cols])
    red, blue = planes['R'], planes['B']
    if data.dtype.kind == 'u' and data.dtype.itemsize <= 2:
        # Green is the mean of the two greens: their sum (exact) halved, one table for it.
        green, green_scale = np.add(planes['G2'], planes['G1'], dtype=np.uint32), 0.5
    else:
        green, green_scale = (planes['G2'].astype(np.float32) + planes['G1']) * np.float32(0.5), 1
    # Row 0 of the array is the bottom of the sky picture (FITS convention).
    return _stretch([red, green, blue], _sample_step(red.shape), (1, green_scale, 1))[::-1]


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


def _replace_symlink(target: Path, link: Path) -> None:
    """Point ``link`` at ``target``, replacing any link there in one step."""
    with atomic_path(link) as temp:
        os.symlink(target, temp)
