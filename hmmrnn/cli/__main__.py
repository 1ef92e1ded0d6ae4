import sys

from hmmrnn.cli import main

sys.exit(main())
