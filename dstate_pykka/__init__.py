"""dstate on Pykka."""
