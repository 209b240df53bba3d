"""``python -m dstate_core status ...``: look at a running network cluster (see ``process``)."""

from .process._status_command import main

raise SystemExit(main())
