"""``manage.py seed``."""
