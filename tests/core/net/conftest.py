"""The 1,000-node traffic test runs only in ``make soak`` (``DSTATE_SOAK=1``)."""

import os

collect_ignore = [] if os.environ.get("DSTATE_SOAK") == "1" else ["test_membership_scale.py"]
