"""``python -m simenv.cli``: the ``simenv`` command."""

from simenv.cli import main

main()
