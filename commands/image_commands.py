"""``panoptes image``: Pretty pictures, timelapses, focus and background."""

import contextlib
from enum import Enum
from pathlib import Path

import typer

from panoptes_cli.commands import options, output

NAME = 'image'
app = typer.Typer(help='Pretty pictures, timelapses, focus and background.', no_args_is_help=True)


class Axis(str, Enum):
    x = 'x'
    y = 'y'


@app.command('pretty')
@options.records_output
def pretty(
    files: list[str] = typer.Argument(..., metavar='FILE...',
                                      help="FITS (.fits, .fits.fz) or CR2 files; '-' reads "
                                           'file names from stdin.'),
    title: str = typer.Option(None, '--title', '-t',
                              help='Title on the picture (default: field, exposure time, '
                                   'filter and date from the header or EXIF).'),
    link_path: Path = typer.Option(None, '--link-path', '-l',
                                   help='Also point this symlink at the (last) JPG, e.g. '
                                        'latest.jpg for a web page; its directory must exist.'),
):
    """Make a JPG picture for people from each FITS or CR2 image, beside it.

    x.fits, x.fits.fz and x.cr2 become x.jpg (replaced if it exists). Raw
    Bayer frames (CR2, FITS with FILTER=RGGB) give colour pictures at half
    size, others grey ones; both with an asinh stretch that shows faint stars
    and the sky, and a title band. One NDJSON line per file:
    {"file": ..., "jpg": ..., "link": ...}; a file that fails is reported on
    stderr and the others go on (exit status 1).

    Examples:

      panoptes image pretty 20160909T081152.fits

      panoptes image pretty --title 'KIC 8462852' --link-path /var/panoptes/images/latest.jpg \\
          20160909T081152.cr2
    """
    from panoptes_cli.images.pretty import PrettyOptions, pretty_picture

    pretty_options = PrettyOptions(title=title, link_path=link_path)
    with output.Batch() as batch:
        paths = output.read_paths(files)
        with output.progress(len(paths), 'Pretty pictures') as advance:
            for path in paths:
                with batch.item(path):
                    try:
                        jpg = pretty_picture(path, pretty_options)
                    finally:
                        advance()
                    output.emit_record({'file': path, 'jpg': jpg,
                                        'link': None if link_path is None else str(link_path)})


@app.command('timelapse')
@options.records_output
def timelapse(
    directory: Path = typer.Argument(..., file_okay=False, help='Directory of images.'),
    glob: str = typer.Option('20[1-9][0-9]*T[0-9]*.jpg', '--glob', '-g',
                             help='Images to use, relative to DIR (default: PANOPTES '
                                  'observation JPGs such as 20160909T081152.jpg).'),
    output_file: Path = typer.Option(None, '--output', '-o', dir_okay=False,
                                     help='Movie file (default: <field>_<camera>_<sequence>.mp4 '
                                          'or <DIR name>.mp4 inside DIR).'),
    fps: float = typer.Option(3, '--fps', min=0.1, help='Frames per second.'),
    overwrite: bool = typer.Option(False, '--overwrite', help='Replace an existing movie.'),
    timeout: float = typer.Option(600, '--timeout', min=1,
                                  help='Give up after this many seconds.'),
):
    """Make an MP4 timelapse (H.264, ffmpeg) of the images in a directory, in name order.

    Frames are scaled to fit in 1920x1080. Prints {"output": ...} as JSON;
    progress (from ffmpeg's -progress) goes to stderr on a terminal. No matching
    image, or an existing movie without --overwrite, is an error (exit 1).
    Needs ffmpeg (Debian: ffmpeg).

    Examples:

      panoptes image timelapse /var/panoptes/images/fields/KIC8462852/ee04d1/20160909T081152

      panoptes image timelapse . --glob '*.jpg' --fps 10 --output night.mp4 --overwrite
    """
    from panoptes_cli.images.timelapse import TimelapseOptions, timelapse_movie

    with contextlib.ExitStack() as stack:
        bar = {}

        def show_progress(done, total):
            if 'advance' not in bar:
                bar['advance'] = stack.enter_context(output.progress(total, 'Encoding'))
                bar['done'] = 0
            bar['advance'](done - bar['done'])
            bar['done'] = done

        try:
            movie = timelapse_movie(directory, TimelapseOptions(
                fn_out=output_file, glob_pattern=glob, overwrite=overwrite, timeout=timeout,
                fps=fps, progress=show_progress))
        except FileExistsError as exc:
            raise FileExistsError(exc.errno, f'{exc.strerror}; pass --overwrite to replace it',
                                  exc.filename) from None
    output.emit_json({'output': movie})


@app.command('focus')
@options.records_output
def focus(
    files: list[str] = typer.Argument(..., metavar='FILE...',
                                      help="FITS or CR2 files; '-' reads file names from stdin."),
    axis: Axis = typer.Option(None, '--axis', '-a',
                              help='Along x or y only (default: the mean of both).'),
):
    """Print the Vollath F4 focus metric of each image as NDJSON (bigger is sharper).

    One line per file: {"file": ..., "vollath_F4": ..., "axis": ...}. Compare
    frames of the same field and exposure, e.g. through a focus run.

    Examples:

      panoptes image focus 20160909T081152.fits

      panoptes image focus focus-run/*.cr2 | jq -s 'max_by(.vollath_F4).file'
    """
    from panoptes_cli.images.focus import focus_metric_file

    which = None if axis is None else axis.value
    with output.Batch() as batch:
        for path in batch.inputs(files):
            with batch.item(path):
                value = focus_metric_file(path, 'vollath_F4', axis=which)
                output.emit_record({'file': path, 'vollath_F4': value, 'axis': which})


@app.command('background')
@options.records_output
def background(
    file: str = typer.Argument(..., help='A FITS image (or CR2 raw frame) with an RGGB '
                                         'Bayer pattern.'),
    output_file: Path = typer.Option(None, '--output', '-o', dir_okay=False,
                                     help='Also write the full-frame background there as FITS.'),
    overwrite: bool = typer.Option(False, '--overwrite', help='Replace an existing --output.'),
    box_size: int = typer.Option(84, '--box-size', min=2,
                                 help='Box side in full-frame pixels.'),
):
    """Print the sky background of each colour channel as JSON: level and RMS (medians).

    Estimates a 2D background per channel (photutils Background2D, sigma-clipped
    means in boxes, median-filtered, spline-interpolated), as the manual's
    get_rgb_background does. Prints {"file", "channels": {"r": {"level",
    "rms"}, "g": ..., "b": ...}, "mean", "output"}.

    Examples:

      panoptes image background 20160909T081152.fits

      panoptes image background 20160909T081152.fits.fz --output background.fits
    """
    from panoptes_cli.images.bayer import background_summary

    try:
        summary = background_summary(file, output=output_file, overwrite=overwrite,
                                     box_size=(box_size, box_size))
    except FileExistsError as exc:
        raise FileExistsError(exc.errno, f'{exc.strerror}; pass --overwrite to replace it',
                              exc.filename) from None
    output.emit_json({'file': file, **summary})
