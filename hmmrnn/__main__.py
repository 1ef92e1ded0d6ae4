"""`python -m hmmrnn`: the `hmmrnn` command."""

import sys

from hmmrnn.cli import main

sys.exit(main())
