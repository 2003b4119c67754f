"""The order machine of `models/` as a Django model with the admin set up
(`statekit.contrib.django`); see README.md."""
