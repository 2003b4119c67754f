"""Framework integrations: thin layers that translate a framework's objects into
statekit's core calls (`statekit.contrib.flask`)."""
