"""Walk the HDUs of a FITS file without astropy, to check it is whole.

``fpack``, ``funpack`` and ``solve-field`` write files that must be checked
before an original is deleted or replaced. Reading only the structural
keywords (a few hundred bytes per HDU) is enough to tell a complete file from
a cut one, and it spares the ``panoptes fits pack`` process the half-second
astropy takes to import, which would double the time to pack a frame.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from panoptes_cli.images._fits_header import CARD, UnusualCard, card_value

BLOCK = 2880


class StructureError(ValueError):
    """The file is not FITS, or not all of it is there."""


@dataclass
class HDUInfo:
    """The structural keywords of one HDU and where it lies in the file."""

    cards: dict = field(default_factory=dict)
    offset: int = 0
    size: int = 0
    header: bytes = b''

    @property
    def is_image(self) -> bool:
        """True for a primary or IMAGE extension holding pixels, or a tile-compressed image."""
        if self.compressed:
            return True
        kind = 'IMAGE' if 'SIMPLE' in self.cards else self.cards.get('XTENSION', '')
        return kind == 'IMAGE' and self.cards.get('NAXIS', 0) > 0

    @property
    def compressed(self) -> bool:
        return self.cards.get('ZIMAGE') is True

    @property
    def image_signature(self) -> tuple[int, tuple[int, ...]]:
        """(BITPIX, axes) of the image, read from the Z keywords of a compressed one."""
        prefix = 'Z' if self.compressed else ''
        naxis = self.cards.get(f'{prefix}NAXIS', 0)
        axes = tuple(self.cards.get(f'{prefix}NAXIS{n}', 0) for n in range(1, naxis + 1))
        return self.cards.get(f'{prefix}BITPIX', 0), axes


_WANTED = ('SIMPLE', 'XTENSION', 'BITPIX', 'NAXIS', 'PCOUNT', 'GCOUNT', 'EXTNAME', 'ZIMAGE',
           'ZBITPIX', 'ZNAXIS', 'ZCMPTYPE')


def _value(field: str):
    """A structural card's value; one the header reader finds unusual stays text."""
    try:
        return card_value(field)
    except UnusualCard:
        return field.split('/', 1)[0].strip()


def _read_header(stream, offset: int) -> tuple[dict, bytes]:
    """Return the structural cards of the header at ``offset`` and the header's bytes."""
    cards = {}
    blocks = []
    while True:
        block = stream.read(BLOCK)
        if len(block) < BLOCK:
            raise StructureError('empty or corrupt FITS file' if not blocks and offset == 0
                                 else f'header at byte {offset} is cut short')
        blocks.append(block)
        for start in range(0, BLOCK, CARD):
            card = block[start:start + CARD].decode('ascii', 'replace')
            keyword = card[:8].rstrip()
            if keyword == 'END':
                return cards, b''.join(blocks)
            if card[8:10] == '= ' and (keyword in _WANTED or keyword[:5] in ('NAXIS', 'ZNAXI')):
                cards[keyword] = _value(card[10:])


def walk(path: str | os.PathLike) -> list[HDUInfo]:
    """Return every HDU of a FITS file; raise StructureError unless the file is whole.

    A whole file is one whose headers and padded data units add up to its size exactly.
    """
    size = os.path.getsize(path)
    hdus = []
    offset = 0
    with open(path, 'rb') as stream:
        if size and not stream.read(9).startswith(b'SIMPLE  ='):
            raise StructureError('no SIMPLE card found')
        while offset < size:
            if offset > 0 and stream.read(8) != b'XTENSION':
                # Bytes after the last HDU that are not an extension: readers ignore them.
                break
            stream.seek(offset)
            cards, header = _read_header(stream, offset)
            header_length = len(header)
            naxis = cards.get('NAXIS', 0)
            axes = [cards.get(f'NAXIS{n}', 0) for n in range(1, naxis + 1)]
            pixels = math.prod(axes) if axes else 0
            data = abs(cards.get('BITPIX', 8)) // 8 * cards.get('GCOUNT', 1) * (
                cards.get('PCOUNT', 0) + pixels)
            padded = -(-data // BLOCK) * BLOCK
            hdus.append(HDUInfo(cards, offset, header_length + padded, header))
            offset += header_length + padded
            if offset > size:
                raise StructureError(f'truncated: {size} of {offset} bytes')
            stream.seek(offset)
    if not hdus:
        raise StructureError('empty or corrupt FITS file')
    return hdus


def image_signatures(hdus: list[HDUInfo]) -> list[tuple[int, tuple[int, ...]]]:
    """The (BITPIX, axes) of every image in the file, compressed or not, in order."""
    return [hdu.image_signature for hdu in hdus if hdu.is_image]
