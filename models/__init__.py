"""Example entities: an order, a support ticket and a travel booking saga."""
