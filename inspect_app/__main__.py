"""``python -m inspect_app`` runs the ``inspect-app`` command."""

import sys

from inspect_app.cli import main

sys.exit(main())
