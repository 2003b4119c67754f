"""Framework integrations: thin layers that translate a framework's objects into
statekit's core calls (`statekit.contrib.flask`, `statekit.contrib.django`); what they
share imports no framework (`statekit.contrib.events`)."""
