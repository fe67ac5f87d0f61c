"""``python -m mtlat_edu ...``: the ``mtlat-edu`` command (so ``torchrun -m mtlat_edu train ...`` works too)."""
import sys

from mtlat_edu.cli import main

if __name__ == "__main__":
    sys.exit(main())
