"""Plots of images and postage stamps, drawn on matplotlib's non-interactive Agg canvas.

Every figure is a ``matplotlib.figure.Figure`` attached to its own Agg
canvas: nothing here imports ``pyplot``, picks a global backend or changes
``rcParams``, so it works on headless observatory computers and in servers
and leaves the caller's matplotlib state alone.

>>> import numpy as np
>>> from panoptes_cli.images.plot import show_stamps
>>> rng = np.random.default_rng(0)
>>> fig = show_stamps([rng.normal(size=(11, 11)), rng.normal(size=(11, 11))], show_residual=True)
>>> [ax.get_title() for ax in fig.axes if ax.get_title()]
['Target', 'Comparison', 'Residual RMS: ...']
"""

from __future__ import annotations

import numpy as np


def _figure(**kwargs):
    """A new Figure on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def get_palette(cmap: str = 'inferno'):
    """Get a palette for drawing.

    Returns a copy of the colormap palette with bad pixels marked: values over
    the range are white, under it black, masked (bad, e.g. saturated) pixels
    green. The registered colormap itself is not changed.

    >>> from panoptes_cli.images.plot import get_palette
    >>> palette = get_palette()
    >>> palette.name
    'inferno'
    >>> palette.get_bad().tolist(), palette.get_over().tolist(), palette.get_under().tolist()
    ([0.0, 0.5, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0])

    Args:
        cmap (str, optional): Name of the matplotlib colormap, default 'inferno'.

    Returns:
        matplotlib.colors.Colormap: The colormap.
    """
    from matplotlib import colormaps

    return colormaps[cmap].with_extremes(over='w', under='k', bad='g')


def add_colorbar(axes_image, size: str = '5%', pad: float = 0.05,
                 orientation: str = 'vertical'):
    """Add a colorbar to the image.

    A convenience function to add a colorbar, as tall (or wide) as the image,
    to a plot made with ``imshow``: vertical on the right, or horizontal below.

    >>> import numpy as np
    >>> from panoptes_cli.images.plot import _figure, add_colorbar
    >>> fig = _figure()
    >>> ax = fig.add_subplot()
    >>> im1 = ax.imshow(np.arange(100.0).reshape(10, 10), origin='lower')
    >>> colorbar = add_colorbar(im1)
    >>> len(fig.axes)
    2

    Args:
        axes_image (matplotlib.image.AxesImage): A matplotlib AxesImage.
        size (str, optional): Width of the colorbar relative to the image, default '5%'.
        pad (float, optional): Space between image and colorbar in inches, default 0.05.
        orientation (str, optional): 'vertical' (default) or 'horizontal'.

    Returns:
        matplotlib.colorbar.Colorbar: The colorbar.
    """
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    divider = make_axes_locatable(axes_image.axes)
    position = 'bottom' if orientation == 'horizontal' else 'right'
    cax = divider.append_axes(position, size=size, pad=pad)
    return axes_image.figure.colorbar(axes_image, cax=cax, orientation=orientation)


def add_pixel_grid(ax1, grid_height: int, grid_width: int, show_axis_labels: bool = True,
                   show_superpixel: bool = False, major_alpha: float = 0.5,
                   minor_alpha: float = 0.25) -> None:
    """Draw lines between the pixels of an image (and between Bayer super-pixels).

    >>> import numpy as np
    >>> from panoptes_cli.images.plot import _figure, add_pixel_grid
    >>> ax = _figure().add_subplot()
    >>> _ = ax.imshow(np.zeros((4, 6)))
    >>> add_pixel_grid(ax, 4, 6, show_superpixel=True)
    >>> ax.get_xticks().tolist()  # super-pixel edges
    [-0.5, 1.5, 3.5, 5.5]
    >>> ax.get_xticks(minor=True).tolist()  # the other pixel edges
    [0.5, 2.5, 4.5]

    Args:
        ax1 (matplotlib.axes.Axes): The axes holding the image.
        grid_height (int): Image height in pixels.
        grid_width (int): Image width in pixels.
        show_axis_labels (bool, optional): Keep the tick labels, default True.
        show_superpixel (bool, optional): Also draw heavier lines every 2 pixels, around
            each RGGB super-pixel, default False.
        major_alpha (float, optional): Opacity of the super-pixel lines, default 0.5.
        minor_alpha (float, optional): Opacity of the pixel lines, default 0.25.
    """
    if show_superpixel:
        ax1.set_xticks(np.arange(-0.5, grid_width, 2))
        ax1.set_yticks(np.arange(-0.5, grid_height, 2))
        ax1.grid(which='major', color='r', linestyle='--', lw=3, alpha=major_alpha)
    else:
        ax1.set_xticks([])
        ax1.set_yticks([])
    ax1.set_xticks(np.arange(-0.5, grid_width, 1), minor=True)
    ax1.set_yticks(np.arange(-0.5, grid_height, 1), minor=True)
    ax1.grid(which='minor', color='r', lw=2, linestyle='--', alpha=minor_alpha)
    if not show_axis_labels:
        ax1.set_xticklabels([])
        ax1.set_yticklabels([])


def animate_stamp(d0):
    """Animate a stack of stamps (frames first), one frame every half second.

    Save it with ``ani.save('stamp.gif', writer='pillow')`` or show it in a
    notebook with ``ani.to_jshtml()``.

    >>> import numpy as np
    >>> from panoptes_cli.images.plot import animate_stamp
    >>> ani = animate_stamp(np.random.default_rng(0).normal(size=(3, 10, 10)))
    >>> gif = getfixture('tmp_path') / 'stamp.gif'
    >>> ani.save(gif, writer='pillow')
    >>> gif.stat().st_size > 0
    True

    Args:
        d0 (numpy.ndarray): The frames, ``N x height x width``.

    Returns:
        matplotlib.animation.FuncAnimation: The animation.
    """
    from matplotlib import animation

    frames = np.asarray(d0)
    fig = _figure()
    ax = fig.add_subplot(111)
    ax.set_xticks([])
    ax.set_yticks([])
    image = ax.imshow(frames[0], cmap=get_palette(),
                      vmin=np.nanmin(frames), vmax=np.nanmax(frames))
    ax.set_title('Frame 000')

    def show_frame(index):
        image.set_data(frames[index])
        ax.set_title(f'Frame {index:03d}')
        return (image,)

    return animation.FuncAnimation(fig, show_frame, frames=len(frames), interval=500,
                                   blit=False)


def _as_stamp(stamp, frame_idx, stamp_size: int) -> np.ndarray:
    stamp = np.asarray(stamp, dtype=float)
    if frame_idx is not None:
        stamp = stamp[frame_idx]
    if stamp.ndim == 1:
        stamp = stamp.reshape(stamp_size, stamp_size)
    return stamp


def show_stamps(pscs, frame_idx=None, stamp_size: int = 11, aperture_position=None,
                show_residual: bool = False, stretch: str | None = None,
                save_name=None, show_max: bool = False, show_pixel_grid: bool = False,
                **kwargs):
    """Show postage stamps side by side: the target, its comparison(s), and their residual.

    ``pscs`` holds stamps (``stamp_size x stamp_size``, or flattened) or, with
    ``frame_idx``, postage-stamp cubes (frames first) from which that frame is
    shown. All share the first stamp's colour scale.

    Args:
        pscs (list): The stamps or stamp cubes; the first is the target.
        frame_idx (int, optional): The frame of each cube to show.
        stamp_size (int, optional): Side of a flattened stamp, default 11.
        aperture_position (tuple, optional): (x, y) marked with a cross, default the
            stamp centre.
        show_residual (bool, optional): Add the target minus the first comparison.
        stretch (str, optional): 'log' for a log stretch, else linear.
        save_name (str, optional): Also save the figure there.
        show_max (bool, optional): Circle the brightest pixel of each stamp.
        show_pixel_grid (bool, optional): Draw the pixel grid.
        **kwargs: Passed to ``Figure`` (e.g. ``figsize``, ``dpi``).

    Returns:
        matplotlib.figure.Figure: The figure.
    """
    from astropy.visualization import ImageNormalize, LinearStretch, LogStretch, MinMaxInterval

    stamps = [_as_stamp(stamp, frame_idx, stamp_size) for stamp in pscs]
    if not stamps:
        raise ValueError('show_stamps needs at least one stamp')
    height, width = stamps[0].shape
    if aperture_position is None:
        aperture_position = ((width - 1) / 2, (height - 1) / 2)
    panels = [('Target', stamps[0])]
    panels += [('Comparison' if len(stamps) == 2 else f'Comparison {number}', stamp)
               for number, stamp in enumerate(stamps[1:], start=1)]

    norm = ImageNormalize(stamps[0], interval=MinMaxInterval(),
                          stretch=LogStretch() if stretch == 'log' else LinearStretch())
    ncols = len(panels) + (1 if show_residual and len(stamps) > 1 else 0)
    kwargs.setdefault('figsize', (4 * ncols, 4))
    fig = _figure(**kwargs)

    for column, (title, stamp) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, ncols, column)
        add_colorbar(ax.imshow(stamp, cmap=get_palette(), norm=norm))
        ax.set_title(title)
        ax.plot(*aperture_position, marker='+', color='c', markersize=12)
        if show_max:
            row, col = np.unravel_index(np.nanargmax(stamp), stamp.shape)
            ax.plot(col, row, marker='o', markerfacecolor='none', color='c', markersize=12)
        if show_pixel_grid:
            add_pixel_grid(ax, height, width, show_superpixel=False)
        ax.set_xticklabels([])
        ax.set_yticklabels([])

    if ncols > len(panels):
        residual = stamps[0] - stamps[1]
        ax = fig.add_subplot(1, ncols, ncols)
        add_colorbar(ax.imshow(residual, cmap=get_palette(), norm=ImageNormalize(
            residual, interval=MinMaxInterval(), stretch=LinearStretch())))
        ax.set_title(f'Residual RMS: {np.nanstd(residual):.01%}')
        if show_pixel_grid:
            add_pixel_grid(ax, height, width, show_superpixel=False)
        ax.set_xticklabels([])
        ax.set_yticklabels([])

    if save_name:
        fig.savefig(save_name)
    return fig
