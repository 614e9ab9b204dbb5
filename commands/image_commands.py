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
    files: list[str] = options.files('FITS (.fits, .fits.fz) or CR2 files'),
    title: str = typer.Option(None, '--title', '-t',
                              help='Title on the picture (default: field, exposure time, '
                                   'filter and date from the header or EXIF).'),
    link_path: Path = typer.Option(None, '--link-path', '-l',
                                   help='Also point this symlink at the JPG made last, e.g. '
                                        'latest.jpg for a web page; its directory must exist.'),
    output_dir: Path = options.OUTPUT_DIR,
    overwrite: bool = options.OVERWRITE,
    jobs: int = options.JOBS,
    scheduler: str = options.SCHEDULER,
):
    """Make a JPG picture for people from each FITS or CR2 image, beside it.

    x.fits, x.fits.fz and x.cr2 become x.jpg (beside the input, or in
    --output-dir). Raw Bayer frames (CR2, FITS with FILTER=RGGB) give colour
    pictures at half size, others grey ones; both with an asinh stretch that
    shows faint stars and the sky, and a title band. One NDJSON line per
    file, as each finishes: {"filename": ..., "output": ..., "link": ...}; a
    file that fails (or whose JPG exists, without --overwrite) is reported on
    stderr and the others go on (exit status 1).

    Examples:

    \b
      panoptes image pretty 20160909T081152.fits
      panoptes image pretty --overwrite -j 2 night/*.fits.fz
      panoptes image pretty --title 'KIC 8462852' \\
          --link-path /var/panoptes/images/latest.jpg 20160909T081152.cr2
    """
    from functools import partial

    from panoptes_cli.images.pretty import PrettyOptions

    link = None if link_path is None else str(link_path)
    settings = PrettyOptions(title=title, link_path=link_path, overwrite=overwrite,
                             keep_exiftool=True)
    output.run_batch(files, partial(_pretty_picture, output_dir=output_dir, settings=settings),
                     jobs=jobs, description='Pretty pictures',
                     record=lambda path, jpg: {'filename': path, 'output': jpg, 'link': link},
                     scheduler=scheduler)


def _pretty_picture(path: str, output_dir: Path | None, settings) -> str:
    """Make one pretty picture (in a worker process), in output_dir when given."""
    import dataclasses

    from panoptes_cli.images.pretty import pretty_image_path, pretty_picture

    jpg = pretty_image_path(path, output_dir)
    return pretty_picture(path, dataclasses.replace(settings, jpg_fname=jpg))


@app.command('timelapse')
@options.records_output
def timelapse(
    directory: Path = typer.Argument(..., file_okay=False, help='Directory of images.'),
    glob: str = typer.Option('20[1-9][0-9]*T[0-9]*.jpg', '--glob', '-g',
                             help='Images to use, relative to DIR (default: PANOPTES '
                                  'observation JPGs such as 20160909T081152.jpg).'),
    output_file: Path = typer.Option(None, '--output', dir_okay=False,
                                     help='Movie file (default: <field>_<camera>_<sequence>.mp4 '
                                          'or <DIR name>.mp4 inside DIR).'),
    fps: float = typer.Option(3, '--fps', min=0.1, help='Frames per second.'),
    overwrite: bool = options.OVERWRITE,
    timeout: float = options.timeout(600, 'Give up after this many seconds.'),
):
    """Make an MP4 timelapse (H.264, ffmpeg) of the images in a directory, in name order.

    Frames are scaled to fit in 1920x1080. Prints {"output": ...};
    progress (from ffmpeg's -progress) goes to stderr on a terminal. No matching
    image, or an existing movie without --overwrite, is an error (exit 1).
    Needs ffmpeg (Debian: ffmpeg).

    Examples:

    \b
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
            raise output.with_overwrite_hint(exc) from None
    output.emit_record({'output': movie})


@app.command('focus')
@options.records_output
def focus(
    files: list[str] = options.files('FITS or CR2 files'),
    axis: Axis = typer.Option(None, '--axis', '-a',
                              help='Along x or y only (default: the mean of both).'),
    jobs: int = options.JOBS,
    scheduler: str = options.SCHEDULER,
):
    """Print the Vollath F4 focus metric of each image as NDJSON (bigger is sharper).

    One line per file, as each finishes: {"filename": ..., "vollath_F4": ...,
    "axis": ...}. Compare frames of the same field and exposure, e.g. through
    a focus run.

    Examples:

    \b
      panoptes image focus 20160909T081152.fits
      panoptes image focus focus-run/*.cr2 --table
      panoptes image focus focus-run/*.cr2 | jq -s 'max_by(.vollath_F4).filename'
    """
    from functools import partial

    from panoptes_cli.images.focus import focus_metric_file

    which = None if axis is None else axis.value
    output.run_batch(files, partial(focus_metric_file, merit_function='vollath_F4', axis=which),
                     jobs=jobs, description='Focus',
                     record=lambda path, value: {'filename': path, 'vollath_F4': value,
                                                 'axis': which},
                     scheduler=scheduler)


@app.command('background')
@options.records_output
def background(
    files: list[str] = options.files('FITS images (or CR2 raw frames) with an RGGB Bayer '
                                     'pattern'),
    output_dir: Path = options.OUTPUT_DIR,
    overwrite: bool = options.OVERWRITE,
    box_size: int = typer.Option(84, '--box-size', min=2,
                                 help='Box side in full-frame pixels.'),
    jobs: int = options.JOBS,
    scheduler: str = options.SCHEDULER,
):
    """Print the sky background of each colour channel as NDJSON: level and RMS (medians).

    Estimates a 2D background per channel (photutils Background2D, sigma-clipped
    means in boxes, median-filtered, spline-interpolated), as the manual's
    get_rgb_background does. Prints {"filename", "channels": {"r": {"level",
    "rms"}, "g": ..., "b": ...}, "mean", "output"} per file, as each
    finishes. With --output-dir, the full-frame background of x.fits is also
    written there as x-background.fits ("output"; else null).

    Examples:

    \b
      panoptes image background 20160909T081152.fits
      panoptes image background --csv night/*.fits.fz
      panoptes image background 20160909T081152.fits.fz --output-dir .
    """
    from functools import partial

    output.run_batch(files, partial(_background, output_dir=output_dir, overwrite=overwrite,
                                    box_size=(box_size, box_size)),
                     jobs=jobs, description='Background',
                     record=lambda path, summary: {'filename': path, **summary},
                     scheduler=scheduler)


def _background(path: str, output_dir: Path | None, **settings) -> dict:
    """Measure one frame's background (in a worker process), writing it into output_dir."""
    from panoptes_cli.images.bayer import background_summary

    return background_summary(path, output=options.output_path(output_dir, path,
                                                               '-background.fits'), **settings)


@app.command('watch')
@options.records_output
def watch(
    directories: list[Path] = typer.Argument(..., metavar='DIR...', file_okay=False, exists=True,
                                             help='Directories the camera writes frames into.'),
    steps: str = typer.Option('convert,solve,pack,pretty', '--steps', '-s', metavar='STEPS',
                              help='Steps for each frame, comma-separated, run in this order.'),
    record: str = typer.Option(None, '--record', metavar='COLLECTION', show_default=False,
                               help="Store one record per frame in this 'panoptes db' collection "
                                    '(PANOPTES_DB_TYPE/PANOPTES_DB_NAME choose the store).'),
    once: bool = typer.Option(False, '--once',
                              help='Process the frames already there, then exit (for cron).'),
    poll: bool = typer.Option(False, '--poll',
                              help='Poll the directories instead of inotify (network file systems).'),
    settle: float = typer.Option(2.0, '--settle', min=0, metavar='SECONDS',
                                 help='Take a file not seen closed once its size and time '
                                      'stayed unchanged this long.'),
    jobs: int = options.JOBS,
    output_dir: Path = options.OUTPUT_DIR,
    index_dir: list[str] = typer.Option(None, '--index-dir', show_default=False,
                                        help='Solve with the astrometry.net index files in '
                                             'this directory (repeatable).'),
    config: str = typer.Option(None, '--config', show_default=False,
                               help='Solve with this astrometry.net backend config file.'),
    solve_timeout: float = typer.Option(60, '--solve-timeout', min=1, metavar='SECONDS',
                                        help='Give up solving a frame after this long.'),
    latest: bool = typer.Option(True, '--latest/--no-latest',
                                help='Keep latest.jpg (beside the JPGs) the newest picture.'),

    scheduler: str = options.SCHEDULER,
):
    """Run each new frame in DIR... through convert, solve, pack and pretty, as it arrives.

    Frames are Canon CR2 and FITS files. For x.cr2: convert writes x.fits
    (raw Bayer pixels and EXIF keywords), solve puts the astrometry.net WCS in
    its header, pack writes x.fits.fz (lossless) and removes x.fits, pretty
    writes x.jpg and makes latest.jpg the same picture. A FITS frame skips
    convert (and pack replaces it by x.fits.fz). Each frame is read once;
    every output is written atomically. Outputs go beside each frame, or in
    --output-dir.

    A file is taken once complete: closed by its writer, or unchanged for
    --settle seconds (always so with --poll, and for files there at start).
    --jobs frames run at once. One NDJSON event per step on stdout:
    {"filename", "step", "output", "seconds"}, or "error" in place of
    "output"; a progress line on stderr when it is a terminal.

    Restarting (even after kill -9) never redoes a finished step and never
    skips an unfinished one: each step's state is read from its output and
    from the frame's journal (.x.pipeline.json beside the outputs). A failed
    step (a truncated CR2, an unsolvable field, a full disk) is journalled,
    not retried (delete the journal to retry), and never stops the others.

    Without --once it runs until Ctrl-C or SIGTERM, which finish the frames
    in hand and exit 0. With --once it processes what is there (waiting for
    files still being written) and exits 1 if any step failed.

    Examples:

    \b
      panoptes image watch --index-dir /var/panoptes/astrometry /var/panoptes/images/incoming
      panoptes image watch --once --jobs 2 --steps convert,pack,pretty --record images raw/
    """
    import signal
    import threading

    from panoptes_cli.images.pipeline import PipelineOptions
    from panoptes_cli.images.watch import watch as watch_frames

    solve_options = {}
    if index_dir:
        solve_options['index_dir'] = index_dir
    if config:
        solve_options['--config'] = config
    try:
        pipeline = PipelineOptions(
            steps=tuple(step.strip() for step in steps.split(',') if step.strip()),
            output_dir=output_dir, solve_timeout=solve_timeout, solve_options=solve_options,
            latest=latest, record=record)
    except ValueError as exc:
        raise typer.BadParameter(str(getattr(exc, 'msg', exc)), param_hint='--steps') from None

    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    status = _WatchStatus()
    try:
        # Workers do not share our working directory: frames go to them by absolute path.
        watched = [directory.resolve() for directory in directories] if scheduler else directories
        for events in watch_frames(watched, pipeline, jobs=options.jobs_or_cores(jobs),
                                   once=once, settle=settle, poll=poll, stop=stop,
                                   scheduler=scheduler):
            for event in events:
                status.clear()
                output.emit_record(event)
            status.frame_done(events)
    finally:
        status.clear()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if once and status.failed:
        raise typer.Exit(1)


class _WatchStatus:
    """The one-line progress shown on stderr when it is a terminal."""

    def __init__(self):
        import sys

        self.stream = sys.stderr
        self.shown = self.stream.isatty()
        self.frames = self.failed = 0

    def frame_done(self, events):
        self.frames += 1
        self.failed += any('error' in event for event in events)
        if self.shown:
            name = Path(events[-1]['filename']).name if events else ''
            self.stream.write(f'\r\x1b[Kwatch: {self.frames} frames, {self.failed} with errors; '
                              f'last {name}')
            self.stream.flush()

    def clear(self):
        if self.shown:
            self.stream.write('\r\x1b[K')
            self.stream.flush()
