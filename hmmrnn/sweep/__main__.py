"""`python -m hmmrnn.sweep FOLDER`: one local sweep job (see hmmrnn.sweep.local)."""

import sys

from hmmrnn.sweep.local import child_main

sys.exit(child_main(sys.argv[1:]))
