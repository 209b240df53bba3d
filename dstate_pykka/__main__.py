"""``python -m dstate_pykka node ...``: run one network node as a process (see ``_cli``)."""

from ._cli import main

raise SystemExit(main())
