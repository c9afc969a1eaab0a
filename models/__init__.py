"""Networks: building them by name, loading weights, running them."""
