"""``python -m coursekit`` is the ``coursekit`` command."""

from .cli import main

raise SystemExit(main())
