"""``manage.py statekit`` (`statekit.contrib.django.management.commands.statekit`)."""
