"""``panoptes cr2``: Canon CR2 raw frames: convert and read EXIF."""

from enum import Enum
from pathlib import Path

import typer

from panoptes_cli.commands import options, output

NAME = 'cr2'
app = typer.Typer(help='Canon CR2 raw frames: convert and read EXIF.', no_args_is_help=True)


class Target(str, Enum):
    fits = 'fits'
    pgm = 'pgm'
    jpg = 'jpg'


class Decoder(str, Enum):
    auto = 'auto'
    rawpy = 'rawpy'
    dcraw = 'dcraw'


# What each conversion runs, checked once before a batch starts.
_PROGRAMS = {'fits': ['exiftool'], 'pgm': ['dcraw'], 'jpg': ['exiftool']}


@app.command('convert')
@options.records_output
def convert(
    files: list[str] = options.files('CR2 files'),
    to: Target = typer.Option(Target.fits, '--to', help='Output format: fits, pgm or jpg.'),
    output_dir: Path = options.OUTPUT_DIR,
    overwrite: bool = options.OVERWRITE,
    remove_cr2: bool = typer.Option(False, '--remove-cr2',
                                    help='Delete each CR2 once its output is complete.'),
    jobs: int = options.JOBS,
    scheduler: str = options.SCHEDULER,
    decoder: Decoder = typer.Option(Decoder.auto, '--decoder',
                                    help='Pixel decoder for fits/jpg: auto (LibRaw, then '
                                         'dcraw), rawpy or dcraw.'),
):
    """Convert CR2 raw frames to FITS (default), PGM or a pretty JPG.

    x.cr2 becomes x.fits (x.pgm, x.jpg) beside it, or in --output-dir. One
    NDJSON line per file, as each finishes: {"filename": ..., "output": ...}.
    A file that fails is reported on stderr as "Error: FILE: why" and the
    others go on; the exit status is then 1. Nothing half-written is left.

    FITS: the raw Bayer pixels (as `dcraw -t 0 -D -4` gives them), decoded in
    process by LibRaw (rawpy), with dcraw as the fallback; EXPTIME, ISO,
    DATE-OBS, CAMSN and FILTER=RGGB come from the EXIF (exiftool). PGM: dcraw's
    own output. JPG: a colour picture with an asinh stretch and a title.

    Needs exiftool (Debian: libimage-exiftool-perl); dcraw for --to pgm.

    Examples:

    \b
      panoptes cr2 convert 20160909T081152.cr2
      panoptes cr2 convert --to jpg --output-dir /var/www/latest *.cr2
      find . -name '*.cr2' | panoptes cr2 convert --remove-cr2 -
      panoptes cr2 convert night/*.cr2 | panoptes fits solve - | panoptes fits pack -
    """
    from functools import partial

    from panoptes_cli.images.conversion import ConvertOptions, convert_file
    from panoptes_cli.programs import find_program

    needed = _PROGRAMS[to.value] + (['dcraw'] if decoder is Decoder.dcraw else [])
    if not scheduler:  # else they run on the workers, which are checked there
        for program in needed:
            find_program(program)
    convert_options = ConvertOptions(to=to.value, output_dir=output_dir, overwrite=overwrite,
                                     remove_cr2=remove_cr2, decoder=decoder.value)
    output.run_batch(files, partial(convert_file, options=convert_options),
                     jobs=jobs, description='Converting',
                     record=lambda path, result: {'filename': path, 'output': result},
                     scheduler=scheduler, programs=needed)


@app.command('preview')
@options.records_output
def preview(
    files: list[str] = options.files('CR2 files'),
    output_dir: Path = options.OUTPUT_DIR,
    output_file: Path = typer.Option(None, '--output', dir_okay=False,
                                     help='Write the one FILE\'s preview to this path '
                                          '(e.g. latest.jpg for a web cam page).'),
    overwrite: bool = options.OVERWRITE,
):
    """Extract the camera's own full-size JPEG preview from CR2 frames, right way up.

    x.cr2 gives x.jpg beside it (or in --output-dir). No raw decoding: the
    picture the camera rendered is copied out in milliseconds, and turned
    when the camera recorded the frame as rotated (EXIF orientation). One
    NDJSON line per file, in the order given: {"filename": ..., "output": ...}.
    A file without a preview is reported on stderr as "Error: FILE: why" and
    the others go on; the exit status is then 1. Files are written
    atomically: a web server never serves half a picture.

    Uses LibRaw (rawpy); exiftool (Debian: libimage-exiftool-perl) for files
    LibRaw cannot read.

    Examples:

    \b
      panoptes cr2 preview 20160909T081152.cr2
      panoptes cr2 preview --overwrite --output /var/www/latest.jpg "$(ls -t *.cr2 | head -1)"
    """
    from panoptes_cli.images.preview import extract_preview

    if output_file is not None and (len(files) != 1 or files == ['-']):
        raise typer.BadParameter('takes exactly one FILE', param_hint='--output')
    with output.Batch() as batch:
        for path in batch.inputs(files):
            with batch.item(path):
                try:
                    result = extract_preview(path, output_file, output_dir, overwrite=overwrite)
                except FileExistsError as exc:
                    raise output.with_overwrite_hint(exc) from None
                output.emit_record({'filename': path, 'output': result})


@app.command('exif')
@options.records_output
def exif(
    files: list[str] = options.files('CR2 (or any image) files'),
):
    """Print the EXIF of CR2 files as NDJSON: {"filename": ..., "exif": {...}} per file.

    The EXIF keys are exiftool's tag names. exiftool runs once for many
    files. A file that cannot be read is reported on stderr as "Error: FILE:
    why" and the others go on; the exit status is then 1. Needs exiftool
    (Debian: libimage-exiftool-perl).

    Examples:

    \b
      panoptes cr2 exif 20160909T081152.cr2
      panoptes cr2 exif *.cr2 --tsv
      panoptes cr2 exif *.cr2 | jq -r '[.exif.FileName, .exif.ExposureTime] | @tsv'
    """
    from panoptes_cli.images.cr2 import read_exif_batch

    with output.Batch() as batch:
        paths = list(batch.inputs(files))
        for path, result in read_exif_batch(paths):
            with batch.item(path):
                if isinstance(result, Exception):
                    raise result
                output.emit_record({'filename': path, 'exif': result})
