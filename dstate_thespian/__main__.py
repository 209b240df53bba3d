"""``python -m dstate_thespian node ...``: run one dstate node as a process (see ``_cli``)."""

from ._cli import main

raise SystemExit(main())
