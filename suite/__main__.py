"""``python -m suite`` is the ``gradsuite`` command."""

import sys

from suite.cli import main

sys.exit(main())
