"""`python -m hmmrnn_tui`: the `hmmrnn-tui` workbench."""

import sys

from hmmrnn_tui.app import main

sys.exit(main())
