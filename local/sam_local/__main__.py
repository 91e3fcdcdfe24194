"""`python -m sam_local`."""

import sys

from sam_local.cli import main

sys.exit(main())
