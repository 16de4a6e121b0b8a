"""``python -m ned`` runs the ``ned`` command."""

import sys

from ned.cli import main

sys.exit(main())
