"""``python -m disentangled_face.training``: see :mod:`disentangled_face.training.cli`."""

from .cli import main

raise SystemExit(main())
