"""``python -m engine.cli``: the ``ntd`` command (used where a console script is not on PATH)."""

from engine.cli import main

main()
