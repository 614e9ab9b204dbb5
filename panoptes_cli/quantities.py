"""Plain numbers out of astropy Quantities, without importing astropy.

A base module: :mod:`panoptes_cli.time` and :mod:`panoptes_cli.utils` both
need it, and it needs neither.
"""


def get_quantity_value(quantity, unit=None):
    """Return the number in a Quantity, converted to ``unit`` if given; other objects as is.

    >>> from astropy import units as u
    >>> get_quantity_value(60 * u.second)
    60.0
    >>> get_quantity_value(60 * u.minute, unit='second')
    3600.0
    >>> get_quantity_value(60 * u.minute, unit=u.second)
    3600.0
    >>> get_quantity_value(60)
    60
    """
    if hasattr(quantity, 'to_value') and hasattr(quantity, 'unit'):
        value = quantity.to_value(unit)
        return float(value) if getattr(value, 'ndim', 0) == 0 else value
    return quantity
