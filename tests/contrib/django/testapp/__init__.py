"""The test app: Django twins of the contract suites' entities (label `testapp`)."""
