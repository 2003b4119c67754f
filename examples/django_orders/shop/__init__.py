"""The example's app: the `Order` model, its admin and two pages."""
