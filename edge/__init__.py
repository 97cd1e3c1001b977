"""StoreBox edge appliance."""
