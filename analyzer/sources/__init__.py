"""Ways of reading a registry into an `Inventory`. Each returns the same model types."""
