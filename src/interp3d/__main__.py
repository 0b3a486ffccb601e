"""``python -m interp3d ...``: the same command line as the ``interp3d`` script."""

from .cli import main

main()
