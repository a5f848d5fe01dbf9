"""``python -m ncspec.conformance.cli ...`` (also under ``torchrun``)."""
import sys

from . import main

sys.exit(main())
