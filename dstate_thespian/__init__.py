"""dstate on Thespian."""
