"""Read the keywords and values of one FITS header fast, without astropy.

``panoptes fits header`` on a night's files is dominated by astropy: half a
second to import it, and about a millisecond a file to parse cards through
its configuration system. The cards a camera writes (strings, numbers,
logicals, COMMENT and HISTORY) have a simple fixed format, read here in a
fraction of that. Anything else (long CONTINUE strings, HIERARCH or
record-valued keywords, complex values, repeated keywords, malformed cards)
makes :func:`parse` return None, and the caller uses astropy for that header.

The header of a tile-compressed image is given as astropy gives it: the
image's header, with the compression table's keywords taken out.
"""

from __future__ import annotations

import re

CARD = 80
_STRING = re.compile(r"'((?:[^']|'')*)'")
_INTEGER = re.compile(r'[+-]?\d+$')
_FLOAT = re.compile(r'[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?$')
_COMMENTARY = ('COMMENT', 'HISTORY', '')
# Keywords of the table that holds a compressed image, not of the image.
_TABLE_KEYWORD = re.compile(
    r'^(XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|THEAP|T(TYPE|FORM|UNIT|DIM)\d+|'
    r'CHECKSUM|DATASUM|ZIMAGE|ZCMPTYPE|ZTILE\d+|ZNAME\d+|ZVAL\d+|ZMASKCMP|ZQUANTIZ|ZDITHER0|'
    r'ZBLANK|ZBLOCKED)$')
# Image keywords the compression convention stores under another name.
_IMAGE_KEYWORD = {'ZSIMPLE': 'SIMPLE', 'ZTENSION': 'XTENSION', 'ZBITPIX': 'BITPIX',
                  'ZNAXIS': 'NAXIS', 'ZPCOUNT': 'PCOUNT', 'ZGCOUNT': 'GCOUNT',
                  'ZEXTEND': 'EXTEND', 'ZHECKSUM': 'CHECKSUM', 'ZDATASUM': 'DATASUM'}
_STRUCTURAL = ('SIMPLE', 'XTENSION', 'BITPIX', 'NAXIS')


class UnusualCard(Exception):
    """A card this reader leaves to astropy."""


def card_value(field: str):
    """Parse the value field (columns 11-80) of a card; raise UnusualCard if astropy must.

    >>> card_value("'KIC 8462852'  / a star"), card_value('  5208'), card_value('T')
    ('KIC 8462852', 5208, True)
    """
    text = field.lstrip()
    if text.startswith("'"):
        match = _STRING.match(text)
        if match is None:
            raise UnusualCard
        value = match[1].replace("''", "'").rstrip()
        rest = text[match.end():].lstrip()
        if rest and not rest.startswith('/'):
            raise UnusualCard
        if value.endswith('&'):
            # Perhaps continued on CONTINUE cards.
            raise UnusualCard
        return value
    text = text.split('/', 1)[0].strip()
    if not text:
        return None
    if text in ('T', 'F'):
        return text == 'T'
    if _INTEGER.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text.replace('D', 'E').replace('d', 'e'))
    raise UnusualCard


def _cards(raw: bytes):
    """Yield (keyword, value) for each card before END."""
    text = raw.decode('ascii')
    for start in range(0, len(text), CARD):
        card = text[start:start + CARD]
        keyword = card[:8].rstrip()
        if keyword == 'END':
            return
        if keyword in _COMMENTARY:
            yield keyword, card[8:].rstrip()
        elif card[8:10] == '= ' and keyword not in ('HIERARCH', 'CONTINUE'):
            yield keyword, card_value(card[10:])
        else:
            raise UnusualCard


def parse(raw: bytes, compressed: bool = False) -> dict | None:
    """Return a header's keywords and values, COMMENT and HISTORY as lists, or None.

    ``raw`` is the header's bytes; with ``compressed`` it is the header of a
    tile-compressed image's table, and the image's header is returned.
    None means a card needs astropy to be read right.

    >>> card = lambda text: text.ljust(80).encode()
    >>> parse(card("OBJECT  = 'KIC 8462852'  / a star") + card('EXPTIME =  120.4')
    ...       + card('COMMENT taken by PAN001') + card('END'))
    {'OBJECT': 'KIC 8462852', 'EXPTIME': 120.4, 'COMMENT': ['taken by PAN001']}
    >>> parse(card("LONGSTR = 'abc&'") + card("CONTINUE  'def'") + card('END')) is None
    True
    """
    try:
        cards = list(_cards(raw))
    except (UnusualCard, UnicodeDecodeError):
        return None
    if compressed:
        cards = [(_IMAGE_KEYWORD.get(key, key), value) for key, value in cards
                 if not _TABLE_KEYWORD.match(key) and not (
                     key == 'EXTNAME' and value == 'COMPRESSED_IMAGE')]
        image_axes = [(key, value) for key, value in cards if key.startswith('ZNAXIS')]
        cards = ([(key, value) for key, value in cards if key in _STRUCTURAL]
                 + [(key[1:], value) for key, value in image_axes]
                 + [(key, value) for key, value in cards
                    if key not in _STRUCTURAL and not key.startswith('ZNAXIS')])
    header = {}
    for key, value in cards:
        if key in _COMMENTARY:
            if key:
                header.setdefault(key, []).append(value)
        elif key in header:
            # Repeated keywords: astropy's rules for which one counts.
            return None
        else:
            header[key] = value
    return header
