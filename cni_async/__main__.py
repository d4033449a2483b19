"""``python -m cni_async``: the ``cni-async`` command line."""

import sys

from ._cli import main

sys.exit(main())
