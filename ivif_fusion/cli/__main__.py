"""`python -m ivif_fusion.cli ...` (used with torchrun)."""

import sys

from . import main

sys.exit(main())
