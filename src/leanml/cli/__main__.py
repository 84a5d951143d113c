"""``python -m leanml.cli``: the same as the ``leanml`` script."""

import sys

from leanml.cli import main

sys.exit(main())
