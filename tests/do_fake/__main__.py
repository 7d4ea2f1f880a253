"""`python -m do_fake` (with tests/ on PYTHONPATH): the demo server."""

import sys

from do_fake.demo import main

sys.exit(main())
