"""`python -m modelspec.cli` runs the `mspec` command."""

import sys

from modelspec.cli import main

sys.exit(main())
