"""``python -m daskcal``: the ``daskcal`` command."""

import sys

from daskcal.cli import main

sys.exit(main())
