"""What people and scripts drive onlearn with: the ``onlearn`` command, the Python client of the
HTTP API, the terminal labeller and the demo. They talk HTTP to a server, or open a store for
its maintenance; the serving core never imports them."""
