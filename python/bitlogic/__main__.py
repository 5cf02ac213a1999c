"""``python -m bitlogic``: the ``bitlogic`` command line (see :mod:`bitlogic.cli`)."""

from __future__ import annotations

from bitlogic.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
